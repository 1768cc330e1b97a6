//! `berth`: the daemon (`berth daemon`), the CLI (a client of the Docker
//! Engine API, like `docker`), and later the per-container shim.
//!
//! One file per command group under [`cli`]; the daemon under [`daemon`].

mod certs;
mod cli;
mod client;
mod daemon;
mod shim;
mod stop_signals;

use clap::{CommandFactory, Parser, Subcommand};

/// berth: a container engine whose volumes never lose data.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    /// Daemon to talk to (unix:///path or tcp://HOST:PORT). Defaults to
    /// $BERTH_HOST, then $DOCKER_HOST, then unix:///run/berth.sock.
    #[arg(short = 'H', long = "host", global = true)]
    host: Option<String>,
    /// Speak TLS to a tcp:// daemon (needs --tlsverify: the client always
    /// verifies the daemon). The TLS flags go before the command, as
    /// docker's: `berth --tlsverify -H tcp://HOST:2376 volume ls`.
    #[arg(long)]
    tls: bool,
    /// Verify the daemon against --tlscacert and present --tlscert
    /// (also $DOCKER_TLS_VERIFY).
    #[arg(long)]
    tlsverify: bool,
    /// CA the daemon's certificate must chain to (default:
    /// $DOCKER_CERT_PATH or ~/.docker, ca.pem).
    #[arg(long, value_name = "FILE")]
    tlscacert: Option<std::path::PathBuf>,
    /// The client's certificate (default: ~/.docker/cert.pem).
    #[arg(long, value_name = "FILE")]
    tlscert: Option<std::path::PathBuf>,
    /// The client certificate's key (default: ~/.docker/key.pem).
    #[arg(long, value_name = "FILE")]
    tlskey: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Daemon(Box<daemon::DaemonArgs>),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(cli::volume::VolumeCommand),
    /// Storage pools (thin volumes).
    #[command(subcommand)]
    Pool(cli::pool::PoolCommand),
    /// Backup repositories: add, init, forget, prune, check.
    #[command(subcommand)]
    Backup(cli::backup::BackupCommand),
    /// Manage berth itself.
    #[command(subcommand)]
    System(cli::system::SystemCommand),
    /// Certificates for the API over TCP (a quick mutual-TLS set-up).
    #[command(subcommand)]
    Tls(cli::tls::TlsCommand),
    /// Show client and daemon versions.
    Version,
    /// Show system-wide information.
    Info,
    /// Create and run a new container from an image.
    Run(cli::container::RunArgs),
    /// List containers.
    Ps(cli::container::PsArgs),
    /// Fetch the logs of a container.
    Logs(cli::container::LogsArgs),
    /// Stop one or more running containers.
    Stop(cli::container::StopArgs),
    /// Kill one or more running containers.
    Kill(cli::container::KillArgs),
    /// Remove one or more containers.
    Rm(cli::container::RmArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(cli::container::WaitArgs),
    /// List images.
    Images(cli::image::ImagesArgs),
    /// Import a root filesystem tar as an image.
    Import(cli::image::ImportArgs),
    /// Load images from a `docker save` archive.
    Load(cli::image::LoadArgs),
    /// Show low-level information on containers or images.
    Inspect(cli::image::InspectArgs),
    /// Print the shell completion script (bash, zsh, fish).
    Completion(cli::docs::CompletionArgs),
    /// Write the man pages into a folder.
    Man(cli::docs::ManArgs),
    /// Per-container supervisor started by the daemon.
    #[command(hide = true)]
    Shim(shim::ShimArgs),
    /// Runs one exec's process in a running container (the daemon's helper).
    #[command(hide = true)]
    ExecShim(shim::exec::ExecShimArgs),
    /// Runs one `docker cp` operation inside a container's root (the daemon's helper).
    #[command(hide = true)]
    CopyShim(shim::copy::CopyShimArgs),
}

fn main() {
    use clap::FromArgMatches;
    // First: a stop or reload signal sent during the daemon's start-up
    // waits for its handlers (see `stop_signals`).
    stop_signals::hold();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if !matches!(cli.command, Command::Daemon(_)) {
        stop_signals::release();
    }
    let code = match cli.command {
        // Which daemon flags were given decides how the config file merges.
        Command::Daemon(args) => daemon::run(*args, matches.subcommand_matches("daemon")),
        Command::Shim(args) => shim::run(args),
        Command::ExecShim(args) => shim::exec::run(args),
        Command::CopyShim(args) => shim::copy::run(args),
        Command::Completion(args) => cli::docs::completion(Cli::command(), &args),
        Command::Man(args) => cli::docs::man(Cli::command(), &args),
        Command::Tls(cmd) => cli::tls::run(cmd),
        command => {
            let tls = client::connect::TlsOptions {
                tls: cli.tls,
                verify: cli.tlsverify,
                cacert: cli.tlscacert,
                cert: cli.tlscert,
                key: cli.tlskey,
            }
            .with_env();
            run_client(cli.host, &tls, command)
        }
    };
    std::process::exit(code);
}

/// Runs a CLI command against the daemon; returns the process exit code.
fn run_client(host: Option<String>, tls: &client::connect::TlsOptions, command: Command) -> i32 {
    let host = client::resolve_host(host);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start runtime: {e}");
            return 1;
        }
    };
    let api = match client::ApiClient::new(&host, tls) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("berth: {e:#}");
            return 1;
        }
    };
    match runtime.block_on(dispatch(&api, command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

/// Runs one client command: the command group's function for it.
async fn dispatch(api: &client::ApiClient, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Volume(cmd) => cli::volume::run(api, cmd).await,
        Command::Pool(cmd) => cli::pool::run(api, cmd).await,
        Command::Backup(cmd) => cli::backup::run(api, cmd).await,
        Command::System(cmd) => cli::system::run(api, cmd).await,
        Command::Version => cli::system::version(api).await,
        Command::Info => cli::system::info(api).await,
        Command::Run(a) => cli::container::run(api, a).await,
        Command::Ps(a) => cli::container::ps(api, a).await,
        Command::Logs(a) => cli::container::logs(api, a).await,
        Command::Stop(a) => cli::container::stop(api, a).await,
        Command::Kill(a) => cli::container::kill(api, a).await,
        Command::Rm(a) => cli::container::rm(api, a).await,
        Command::Wait(a) => cli::container::wait(api, a).await,
        Command::Images(a) => cli::image::images(api, a).await,
        Command::Import(a) => cli::image::import(api, a).await,
        Command::Load(a) => cli::image::load(api, a).await,
        Command::Inspect(a) => cli::image::inspect(api, a).await,
        Command::Daemon(_)
        | Command::Shim(_)
        | Command::ExecShim(_)
        | Command::CopyShim(_)
        | Command::Completion(_)
        | Command::Tls(_)
        | Command::Man(_) => {
            unreachable!("handled before")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of every command's flags (names used twice, ...),
    /// which otherwise fire only when that command is run.
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
