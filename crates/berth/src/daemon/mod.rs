//! `berth daemon`: owns a root, serves the Docker Engine API on a unix
//! socket until SIGTERM/SIGINT, then shuts down gracefully.
//!
//! Start-up order matters: the root lock is taken before anything in the
//! root is touched, reconciliation finishes before the socket exists, so no
//! client ever sees a half-repaired state.

mod config;
mod facts;
mod listeners;
mod memory;
mod pidfile;
mod side;
mod socket;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_api::web::samples::{self, Samples};
use berth_api::web::WebState;
use berth_api::ApiState;
use berth_core::backup::BackupService;
use berth_core::container::backup_control::BackupContainers;
use berth_core::container::options::ContainerDefaults;
use berth_core::container::{ContainerService, RuntimeSettings};
use berth_core::driver::local::LocalDriver;
use berth_core::driver::plugin::{PluginDirs, PluginSettings, Plugins};
use berth_core::driver::thin::pool::{PoolSettings, PoolSource};
use berth_core::driver::thin::ThinDriver;
use berth_core::driver::DriverRegistry;
use berth_core::image::registry::RegistryConfig;
use berth_core::image::ImageService;
use berth_core::network::netavark::{self, Netavark};
use berth_core::network::{NetworkRuntime, NetworkService};
use berth_core::root::{RootLayout, RootLock};
use berth_core::store::Store;
use berth_core::sys::units::parse_size;
use berth_core::volume::VolumeService;
use clap::Args;
use side::SideListener;

/// How long in-flight requests get after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The most empty local volume folders kept made ahead (the pool grows to
/// twice the largest burst of creates seen), so the creates of a compose
/// project or a CI run rename instead of allocating inodes: 2 inodes and
/// 8 KiB of disk each.
const LOCAL_SPARE_FOLDERS: usize = 1024;

#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Where to serve the API (repeatable): unix:///path, fd:// (systemd)
    /// or tcp://ADDR:PORT (with --tlsverify).
    #[arg(short = 'H', long = "host", default_value = "unix:///run/berth.sock")]
    host: Vec<String>,
    /// Serve tcp:// hosts with TLS (implied by --tlsverify); --tls=false
    /// serves them in plain HTTP: an unauthenticated API, warned about at
    /// every start.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls: Option<bool>,
    /// Require a client certificate signed by --tlscacert on tcp:// hosts;
    /// --tlsverify=false (with --tls) accepts any client, warned about at
    /// every start.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tlsverify: Option<bool>,
    /// The CA client certificates must be signed by (default:
    /// $DOCKER_CERT_PATH or ~/.docker, ca.pem).
    #[arg(long, value_name = "FILE")]
    tlscacert: Option<PathBuf>,
    /// The server's certificate (default: ~/.docker/cert.pem).
    #[arg(long, value_name = "FILE")]
    tlscert: Option<PathBuf>,
    /// The server certificate's key (default: ~/.docker/key.pem).
    #[arg(long, value_name = "FILE")]
    tlskey: Option<PathBuf>,
    /// Root folder for all persistent state.
    #[arg(long, default_value = "/var/lib/berth")]
    root: PathBuf,
    /// File to write the daemon's PID to.
    #[arg(short = 'p', long, default_value = "/run/berth.pid")]
    pidfile: PathBuf,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// OCI runtime binary for containers (default: the embedded runtime).
    #[arg(long)]
    runtime: Option<String>,
    /// Size of the thin pool file berth creates at first use.
    #[arg(long, default_value = "64G")]
    thin_pool_size: String,
    /// Where the thin pool file lives (default: ROOT/thin/pool.img).
    #[arg(long, conflicts_with_all = ["thin_pool_dir", "thin_pool_device"])]
    thin_pool_file: Option<PathBuf>,
    /// Use this block device, already formatted XFS with reflink
    /// (mkfs.xfs -m reflink=1), as the thin pool. berth never formats it.
    #[arg(long, conflicts_with = "thin_pool_dir")]
    thin_pool_device: Option<PathBuf>,
    /// Use this existing folder (on a reflink-capable filesystem such as
    /// XFS) as the thin pool instead of a pool file.
    #[arg(long)]
    thin_pool_dir: Option<PathBuf>,
    /// Percent of the pool allocated past which thin creates warn.
    #[arg(long, default_value_t = 80)]
    thin_high_water: u8,
    /// Size of a thin volume created without `-o size`.
    #[arg(long)]
    thin_default_size: Option<String>,
    /// Where volume plugins' sockets are looked for (NAME.sock or
    /// NAME/NAME.sock), as dockerd's /run/docker/plugins.
    #[arg(long, value_name = "DIR", default_value = "/run/docker/plugins")]
    plugin_socket_dir: PathBuf,
    /// Where volume plugins' NAME.spec and NAME.json files are looked for
    /// (repeatable; default /etc/docker/plugins and /usr/lib/docker/plugins).
    #[arg(long, value_name = "DIR")]
    plugin_spec_dir: Vec<PathBuf>,
    /// Seconds a volume plugin's Create and Mount may take (Docker: 120;
    /// other calls get half).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    plugin_timeout: u64,
    /// Serve berth's drivers as a Docker volume plugin on this unix
    /// socket (its file name, less `.sock`, is the plugin's name for
    /// dockerd: /run/docker/plugins/berth.sock is `docker volume create
    /// -d berth`).
    #[arg(long, value_name = "SOCKET")]
    serve_volume_plugin: Option<PathBuf>,
    /// Seconds between automatic trims of pools and mounted volumes (0: never).
    #[arg(long, default_value_t = 3600)]
    trim_interval: u64,
    /// Default log option for containers' json-file logs (key=value,
    /// repeatable), e.g. max-size=10m.
    #[arg(long, value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// Default ulimit for containers (name=soft[:hard], repeatable), e.g.
    /// nofile=1024:2048.
    #[arg(long, value_name = "ULIMIT")]
    default_ulimit: Vec<String>,
    /// The Linux bridge of the default `bridge` network (default: berth0).
    #[arg(long, value_name = "NAME")]
    bridge: Option<String>,
    /// The default bridge's address and prefix, as dockerd's --bip
    /// (e.g. 10.214.0.1/24; default: a free 172.17–31/16 at first start).
    #[arg(long, value_name = "CIDR")]
    bip: Option<String>,
    /// A registry spoken to without certificate checks, and over plain
    /// http when it has no https (HOST:PORT or a CIDR; repeatable).
    /// 127.0.0.0/8 always is, as in dockerd.
    #[arg(long, value_name = "REGISTRY")]
    insecure_registry: Vec<String>,
    /// A mirror of Docker Hub tried before it (an http:// or https:// URL;
    /// repeatable).
    #[arg(long, value_name = "URL")]
    registry_mirror: Vec<String>,
    /// Docker's certs.d folder: DIR/HOST:PORT/*.crt are trusted CAs.
    #[arg(long, value_name = "DIR", default_value = "/etc/docker/certs.d")]
    registry_certs_dir: PathBuf,
    /// Layers downloaded at once per pull.
    #[arg(long, value_name = "N", default_value_t = berth_core::image::registry::DEFAULT_DOWNLOADS)]
    max_concurrent_downloads: usize,
    /// Layers uploaded at once per push.
    #[arg(long, value_name = "N", default_value_t = berth_core::image::registry::DEFAULT_UPLOADS)]
    max_concurrent_uploads: usize,
    /// Attempts per layer download (a broken transfer is resumed).
    #[arg(long, value_name = "N", default_value_t = berth_core::image::registry::DEFAULT_DOWNLOAD_ATTEMPTS)]
    max_download_attempts: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9323).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Serve the web view of volumes at http://ADDR/ (read-only unless
    /// --web-admin).
    #[arg(long, value_name = "ADDR")]
    web_addr: Option<std::net::SocketAddr>,
    /// Let the web view take snapshots and clone volumes.
    #[arg(long)]
    web_admin: bool,
    /// Seconds between the web view's samples of pool and volume usage.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    web_sample_interval: u64,
    /// Check the configuration, print "configuration OK" or what is wrong,
    /// and exit without starting.
    #[arg(long)]
    validate: bool,
    /// Daemon configuration file (default: /etc/berth/daemon.json if it
    /// exists). Flags and file may not both set a setting.
    #[arg(long)]
    config_file: Option<PathBuf>,
}

impl DaemonArgs {
    /// The TLS flags of TCP listeners.
    fn tls_flags(&self) -> listeners::TlsFlags {
        listeners::TlsFlags {
            tls: self.tls,
            tlsverify: self.tlsverify,
            cacert: self.tlscacert.clone(),
            cert: self.tlscert.clone(),
            key: self.tlskey.clone(),
        }
    }

    /// How registries are reached: dockerd's defaults plus the flags.
    fn registry_config(&self) -> RegistryConfig {
        let mut config = RegistryConfig::default();
        config
            .insecure
            .extend(self.insecure_registry.iter().cloned());
        config.mirrors = self.registry_mirror.clone();
        config.certs_dir = self.registry_certs_dir.clone();
        config.max_concurrent_downloads = self.max_concurrent_downloads.max(1);
        config.max_concurrent_uploads = self.max_concurrent_uploads.max(1);
        config.max_download_attempts = self.max_download_attempts.max(1);
        config
    }

    /// The log options and ulimits every container gets, checked.
    fn container_defaults(&self) -> Result<ContainerDefaults> {
        ContainerDefaults::parse(&self.log_opt, &self.default_ulimit).map_err(|e| {
            anyhow::anyhow!("invalid container defaults (log-opts, default-ulimits): {e}")
        })
    }

    /// What holds the thin pool (clap refuses more than one flag).
    fn thin_pool_source(&self, layout: &RootLayout) -> PoolSource {
        match (
            &self.thin_pool_device,
            &self.thin_pool_dir,
            &self.thin_pool_file,
        ) {
            (Some(device), _, _) => PoolSource::Device(device.clone()),
            (_, Some(dir), _) => PoolSource::Folder(dir.clone()),
            (_, _, Some(file)) => PoolSource::File(file.clone()),
            _ => PoolSource::File(layout.thin_dir().join("pool.img")),
        }
    }

    /// Thin pool settings from the flags, checked.
    fn thin_settings(&self, layout: &RootLayout) -> Result<PoolSettings> {
        let size = |flag: &str, text: &str| {
            parse_size(text)
                .ok_or_else(|| anyhow::anyhow!("invalid {flag}: {text:?} (use a size such as 64G)"))
        };
        Ok(PoolSettings {
            dir: layout.thin_dir(),
            size: size("--thin-pool-size", &self.thin_pool_size)?,
            source: self.thin_pool_source(layout),
            high_water: f64::from(self.thin_high_water.min(100)) / 100.0,
            default_volume_size: self
                .thin_default_size
                .as_deref()
                .map(|s| size("--thin-default-size", s))
                .transpose()?,
        })
    }
}

/// Runs the daemon to completion; returns the process exit code.
/// `matches` (the daemon command's) tells which flags were given.
pub fn run(mut args: DaemonArgs, matches: Option<&clap::ArgMatches>) -> i32 {
    let cli_args = args.clone();
    let config_file = match config::apply(&mut args, matches) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("berth daemon: {e:#}");
            return 1;
        }
    };
    if args.validate {
        return match validate(&args) {
            Ok(()) => {
                println!("configuration OK");
                0
            }
            Err(e) => {
                eprintln!("berth daemon: invalid configuration: {e:#}");
                1
            }
        };
    }
    if let Err(e) = log_filter(&args.log_level) {
        eprintln!("berth daemon: {e:#}");
        return 1;
    }
    let log_level = init_logging(&args);
    if let Some(path) = &config_file {
        tracing::info!(file = %path.display(), "configuration read");
    }
    let reload = Reload {
        log_level,
        cli_args,
        matches: matches.cloned(),
    };
    memory::limit_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return 1;
        }
    };
    match runtime.block_on(serve(args, reload)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berth daemon: {e:#}");
            1
        }
    }
}

/// Everything `serve` would refuse before touching the root, checked
/// without creating or changing anything (`--validate`).
fn validate(args: &DaemonArgs) -> Result<()> {
    let hosts = listeners::parse_hosts(&args.host)?;
    listeners::tcp_plan(&hosts, &args.tls_flags())?;
    if !args.root.is_absolute() {
        anyhow::bail!("--root must be an absolute path: {}", args.root.display());
    }
    log_filter(&args.log_level)?;
    if !matches!(args.log_format.as_str(), "text" | "json") {
        anyhow::bail!("invalid --log-format {:?}: text or json", args.log_format);
    }
    if let Some(runtime) = &args.runtime {
        let path = std::path::Path::new(runtime);
        if path.is_absolute() && !path.is_file() {
            anyhow::bail!("--runtime {runtime}: no such file");
        }
    }
    args.thin_settings(&RootLayout::unchecked(&args.root))?;
    args.container_defaults()?;
    check_web(args)
}

/// `--web-admin` means something only with `--web-addr`.
fn check_web(args: &DaemonArgs) -> Result<()> {
    if args.web_admin && args.web_addr.is_none() {
        anyhow::bail!(
            "--web-admin (web-admin) needs --web-addr (web-addr): there is no web view to act from"
        );
    }
    if let (Some(metrics), Some(web)) = (args.metrics_addr, args.web_addr) {
        if metrics.port() != 0 && metrics.port() == web.port() {
            anyhow::bail!(
                "--metrics-addr and --web-addr cannot share port {}",
                web.port()
            );
        }
    }
    Ok(())
}

/// The tracing filter for a log level: dockerd's names (`debug`, `info`,
/// `warn`, `error`, `fatal`), `trace`, or a tracing directive list
/// (`berth_core=debug,info`); anything else is refused (a bare unknown word
/// would be read as a target name and silence every log).
fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter> {
    const QUIET_LIBRARIES: &str = "rustic_core=warn,rustic_backend=warn";
    let directive = match level {
        "fatal" | "panic" => "error",
        // The backup libraries are chatty, and an object store's request
        // signing may log what it signs: at most their warnings.
        "trace" | "debug" | "info" | "warn" | "error" => {
            return tracing_subscriber::EnvFilter::try_new(format!("{level},{QUIET_LIBRARIES}"))
                .with_context(|| format!("invalid log level {level:?}"));
        }
        l if l.contains('=') => l,
        _ => anyhow::bail!(
            "invalid log level {level:?}: use debug, info, warn, error or fatal (or a tracing filter such as berth_core=debug)"
        ),
    };
    tracing_subscriber::EnvFilter::try_new(directive)
        .with_context(|| format!("invalid log level {level:?}"))
}

/// The log filter, reloadable (SIGHUP).
type LogLevel =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Logging to stderr, as text or JSON; returns the handle that changes the
/// level at run time.
fn init_logging(args: &DaemonArgs) -> LogLevel {
    use tracing_subscriber::prelude::*;
    // `run` checked the level before (validate): info only if it could not.
    let filter =
        log_filter(&args.log_level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        tracing_subscriber::registry()
            .with(filter)
            .with(layer.json())
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init();
    }
    handle
}

/// What SIGHUP needs: the log filter, the file, the flags given.
struct Reload {
    log_level: LogLevel,
    /// The flags as given, before the file was applied.
    cli_args: DaemonArgs,
    matches: Option<clap::ArgMatches>,
}

impl Reload {
    /// Reads the configuration again (flags still win) and applies what can
    /// change at run time: the log level. Other changed settings are named
    /// in the log: they take a restart.
    fn reload(&self, running: &DaemonArgs) {
        // From the command line again: a key taken out of the file goes
        // back to its flag or default (and is reported if that changes it).
        let mut args = self.cli_args.clone();
        if let Err(e) = config::apply(&mut args, self.matches.as_ref()) {
            tracing::error!("configuration not reloaded: {e:#}");
            return;
        }
        let level = args.log_level.clone();
        for changed in restart_settings_changed(running, &args) {
            tracing::warn!(setting = %changed, "changed in the configuration: takes a restart of the daemon");
        }
        match log_filter(&level) {
            Ok(filter) => {
                // Said before the new level applies, so it is always seen.
                tracing::info!(log_level = %level, "configuration reloaded");
                let _ = self.log_level.reload(filter);
            }
            Err(e) => {
                tracing::error!(log_level = %level, error = %format!("{e:#}"), "invalid log level; kept the old one")
            }
        }
    }
}

async fn serve(args: DaemonArgs, reload: Reload) -> Result<()> {
    // Installed first: a SIGTERM that comes as soon as the socket answers
    // (or even before) must stop the daemon cleanly, not kill it.
    let mut signals = Signals::install()?;
    crate::stop_signals::release();
    check_web(&args)?;
    let defaults = args.container_defaults()?;
    let hosts = listeners::parse_hosts(&args.host)?;
    let tcp_plan = listeners::tcp_plan(&hosts, &args.tls_flags())?;
    let passed = hosts
        .iter()
        .map(socket::take_passed)
        .collect::<Result<Vec<_>>>()?;
    // Bound before the root is touched: a port in use stops the start with
    // nothing made.
    let tcp = listeners::bind_tcp(&hosts).await?;
    let side = (
        bind_side("metrics", args.metrics_addr).await?,
        bind_side("the web view", args.web_addr).await?,
    );
    let layout = RootLayout::create(&args.root)?;
    let _lock = RootLock::acquire(&layout)?;
    let _pid = pidfile::PidFile::create(&args.pidfile)?;
    let engine = EngineSettings {
        runtime: args.runtime.clone(),
        defaults,
        thin: args.thin_settings(&layout)?,
        bridge: args.bridge.clone(),
        bip: args.bip.clone(),
        registry: args.registry_config(),
        plugins: plugin_settings(&args),
    };
    let state = tokio::task::spawn_blocking({
        let layout = layout.clone();
        move || open_services(&layout, engine)
    })
    .await??;
    start_side_listeners(&args, &layout, &state, side)?;
    let mut bound = Vec::new();
    let mut socket_files = Vec::new();
    for (host, passed) in hosts.iter().zip(passed) {
        if let Some((listener, file)) = socket::listen_unix(host, passed)? {
            bound.push(listeners::Bound::Unix(listener));
            socket_files.extend(file);
        }
    }
    for (addr, listener) in tcp {
        if let Some(plan) = &tcp_plan {
            listeners::warn_if_unauthenticated(plan, addr);
        }
        bound.push(listeners::Bound::Tcp(listener));
    }
    tracing::info!(hosts = ?args.host, root = %layout.root().display(), pid = std::process::id(), "berth daemon ready");
    spawn_periodic_trim(state.volumes.clone(), args.trim_interval);
    memory::spawn_periodic_release();
    let networks = state.networks.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    if let Some(path) = &args.serve_volume_plugin {
        let plugin = berth_api::volume_plugin_serve::app(state.volumes.clone());
        servers.push(listeners::serve_plugin(path, plugin, stop_rx.clone())?);
        socket_files.push(path.clone());
    }
    let app = berth_api::app(state);
    servers.extend(listeners::serve_all(
        app,
        bound,
        tcp_plan.as_ref(),
        stop_rx,
    )?);
    spawn_reload_on_hangup(signals.hangup.take(), reload, args.clone());
    signals.stopped().await;
    let _ = stop_tx.send(true);
    let result = finish_within_grace(servers).await;
    // Bridges and NAT rules of networks no container is on go with a
    // clean stop (those with running containers stay: live restore).
    let released = tokio::task::spawn_blocking(move || networks.release_idle_anchors()).await;
    tracing::info!(networks = ?released.ok(), "idle networks taken down");
    for path in socket_files {
        socket::remove(&path);
    }
    tracing::info!("berth daemon stopped");
    result
}

async fn bind_side(
    what: &'static str,
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<SideListener>> {
    match addr {
        Some(addr) => Ok(Some(SideListener::bind(what, addr).await?)),
        None => Ok(None),
    }
}

/// Serves metrics and the web view on the listeners bound for them; with
/// `--web-admin`, writes the admin token the web view's actions need.
fn start_side_listeners(
    args: &DaemonArgs,
    layout: &RootLayout,
    state: &ApiState,
    (metrics, web): (Option<SideListener>, Option<SideListener>),
) -> Result<()> {
    if let Some(listener) = metrics {
        listener.serve(berth_api::metrics::metrics_app(state.clone()))?;
    }
    let token_file = layout.root().join("web-admin.token");
    let Some(listener) = web else {
        let _ = std::fs::remove_file(&token_file);
        return Ok(());
    };
    let samples = Arc::<Samples>::default();
    let interval = Duration::from_secs(args.web_sample_interval);
    samples::spawn_sampler(state.clone(), samples.clone(), interval);
    let admin = if args.web_admin {
        let token = berth_api::web::new_admin_token();
        berth_core::root::write_private(&token_file, format!("{token}\n").as_bytes())
            .with_context(|| format!("writing {}", token_file.display()))?;
        tracing::info!(file = %token_file.display(), "web view actions need the token in this file");
        Some((token, token_file.display().to_string()))
    } else {
        let _ = std::fs::remove_file(&token_file);
        None
    };
    let addr = listener.local_addr()?;
    if admin.is_some() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the web view can act (--web-admin) and listens beyond this host");
    }
    let web = WebState::new(state.clone(), samples, admin, addr.port());
    listener.serve(berth_api::web::web_app(web))
}

/// Returns freed space to the host every `seconds` (fstrim of pools and
/// mounted volumes), so space freed inside volumes does not stay taken.
fn spawn_periodic_trim(volumes: Arc<VolumeService>, seconds: u64) {
    if seconds == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(seconds));
        tick.tick().await;
        loop {
            tick.tick().await;
            let svc = volumes.clone();
            match tokio::task::spawn_blocking(move || svc.trim()).await {
                Ok(Ok(bytes)) => tracing::info!(bytes, "periodic trim"),
                Ok(Err(e)) => tracing::warn!(error = %e, "periodic trim failed"),
                Err(e) => tracing::warn!(error = %e, "periodic trim task failed"),
            }
        }
    });
}

/// Waits for the server to drain after the stop signal, at most
/// [`SHUTDOWN_GRACE`]; requests still running then are abandoned.
async fn finish_within_grace(
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
) -> Result<()> {
    let all = futures_util::future::join_all(servers);
    match tokio::time::timeout(SHUTDOWN_GRACE, all).await {
        Ok(results) => {
            for res in results {
                res??;
            }
            Ok(())
        }
        Err(_) => {
            tracing::warn!("requests still running after the grace period; exiting");
            Ok(())
        }
    }
}

/// What the services are opened with (flags and daemon.json).
struct EngineSettings {
    runtime: Option<String>,
    defaults: ContainerDefaults,
    thin: PoolSettings,
    bridge: Option<String>,
    bip: Option<String>,
    registry: RegistryConfig,
    plugins: PluginSettings,
}

/// Store, services, start-up reconciliation of each, then containers
/// found again (live restore). Runs before the socket exists.
fn open_services(layout: &RootLayout, engine: EngineSettings) -> Result<ApiState> {
    let EngineSettings {
        runtime,
        defaults,
        thin,
        bridge,
        bip,
        registry,
        plugins,
    } = engine;
    let store = Arc::new(Store::open(&layout.db_path()).context("opening metadata store")?);
    let store_for_networks = store.clone();
    let store_for_backups = store.clone();
    let events = Arc::new(berth_core::events::EventBus::default());
    let images =
        Arc::new(ImageService::new(store.clone(), &layout.images_dir())?.with_registry(registry));
    for problem in images.reconcile().context("image store reconciliation")? {
        tracing::error!("reconcile: {problem}");
    }
    let plugins = Arc::new(Plugins::new(plugins));
    let volumes =
        Arc::new(open_volumes(layout, store.clone(), thin, plugins)?.with_events(events.clone()));
    volumes.settle_plugin_rows_later();
    let networks = Arc::new(
        open_networks(layout, store_for_networks, &bridge, &bip)?.with_events(events.clone()),
    );
    let settings = RuntimeSettings {
        containers_dir: layout.containers_dir(),
        runtime_root: layout.runtime_dir(),
        shim_exe: std::env::current_exe().context("locating the berth binary")?,
        default_runtime: runtime,
        defaults,
    };
    let containers = Arc::new(
        ContainerService::new(store, images.clone(), volumes.clone(), settings)?
            .with_events(events.clone())
            .with_networks(networks.clone()),
    );
    let report = containers.restore()?;
    tracing::info!(
        running = report.restored,
        exited = report.exited,
        settled = report.settled,
        auto_removed = report.auto_removed,
        orphans = report.orphans,
        stale_holders = report.stale_holders,
        "containers recovered"
    );
    // Containers whose restart policy wants them running (their exit was
    // recorded while the daemon was down), started in the background.
    let restarting = containers.clone();
    std::thread::spawn(move || {
        let started = restarting.restart_after_startup();
        if !started.is_empty() {
            tracing::info!(
                count = started.len(),
                "containers restarted by their policy"
            );
        }
    });
    let backups = Arc::new(
        BackupService::new(store_for_backups, volumes.clone(), &layout.backup_dir())
            .context("the backup service")?
            .with_events(events.clone())
            .with_containers(Arc::new(BackupContainers(containers.clone()))),
    );
    backups
        .clone()
        .run_scheduler(std::time::Duration::from_secs(1));
    let facts = Arc::new(facts::gather(layout)?);
    Ok(ApiState {
        backups,
        volumes,
        images,
        containers,
        events,
        networks,
        facts,
        metrics: Default::default(),
    })
}

/// The network service on netavark, with the predefined networks and the
/// default bridge as `--bridge`/`--bip` say.
fn open_networks(
    layout: &RootLayout,
    store: Arc<Store>,
    bridge: &Option<String>,
    bip: &Option<String>,
) -> Result<NetworkService> {
    let runtime = NetworkRuntime {
        netavark: Netavark {
            binary: netavark::DEFAULT_NETAVARK.into(),
            aardvark: netavark::DEFAULT_AARDVARK.into(),
            config_dir: layout.netavark_dir(),
        },
        netns_dir: layout.netns_dir(),
    };
    let networks = NetworkService::new(store).with_runtime(runtime);
    let made = networks
        .ensure_predefined()
        .context("the predefined networks")?;
    let changed = networks
        .configure_default_bridge(bridge.as_deref(), bip.as_deref())
        .context("the default bridge network (--bridge, --bip)")?;
    tracing::info!(made, default_bridge_changed = changed, "networks ready");
    Ok(networks)
}

/// Where volume plugins are found, and their timeouts.
fn plugin_settings(args: &DaemonArgs) -> PluginSettings {
    let mut dirs = PluginDirs {
        sockets: args.plugin_socket_dir.clone(),
        own: args.serve_volume_plugin.clone(),
        ..PluginDirs::default()
    };
    if !args.plugin_spec_dir.is_empty() {
        dirs.specs = args.plugin_spec_dir.clone();
    }
    let long = std::time::Duration::from_secs(args.plugin_timeout.max(1));
    PluginSettings {
        dirs,
        long_timeout: long,
        short_timeout: long / 2,
        forbidden: vec![args.root.clone()],
        ..PluginSettings::default()
    }
}

/// The volume service with its drivers, reconciled.
fn open_volumes(
    layout: &RootLayout,
    store: Arc<Store>,
    thin: PoolSettings,
    plugins: Arc<Plugins>,
) -> Result<VolumeService> {
    let mut drivers = DriverRegistry::default();
    drivers.with_plugins(plugins);
    drivers.register(Arc::new(
        LocalDriver::new(&layout.volumes_dir()).with_spares(LOCAL_SPARE_FOLDERS),
    ));
    drivers.register(Arc::new(
        ThinDriver::new(thin).context("opening the thin pool")?,
    ));
    let service = VolumeService::new(store, drivers);
    let report = service.reconcile().context("start-up reconciliation")?;
    tracing::info!(
        rolled_back = report.rolled_back.len(),
        finished_removals = report.finished_removals.len(),
        recreated = report.recreated.len(),
        adopted = report.adopted.len(),
        remounted = report.remounted,
        problems = report.problems.len(),
        "volume reconciliation done"
    );
    Ok(service)
}

/// The settings a reload found changed that only a restart applies.
fn restart_settings_changed(running: &DaemonArgs, new: &DaemonArgs) -> Vec<&'static str> {
    let pairs = [
        ("data-root", running.root != new.root),
        ("hosts", running.host != new.host),
        ("tls", running.tls != new.tls),
        ("tlsverify", running.tlsverify != new.tlsverify),
        ("tlscacert", running.tlscacert != new.tlscacert),
        ("tlscert", running.tlscert != new.tlscert),
        ("tlskey", running.tlskey != new.tlskey),
        ("pidfile", running.pidfile != new.pidfile),
        ("log-format", running.log_format != new.log_format),
        ("runtime", running.runtime != new.runtime),
        ("bridge", running.bridge != new.bridge),
        ("bip", running.bip != new.bip),
        (
            "thin-pool-size",
            running.thin_pool_size != new.thin_pool_size,
        ),
        (
            "thin-pool-file",
            running.thin_pool_file != new.thin_pool_file,
        ),
        (
            "thin-pool-device",
            running.thin_pool_device != new.thin_pool_device,
        ),
        ("thin-pool-dir", running.thin_pool_dir != new.thin_pool_dir),
        (
            "thin-high-water",
            running.thin_high_water != new.thin_high_water,
        ),
        (
            "thin-default-size",
            running.thin_default_size != new.thin_default_size,
        ),
        ("trim-interval", running.trim_interval != new.trim_interval),
        ("metrics-addr", running.metrics_addr != new.metrics_addr),
        ("web-addr", running.web_addr != new.web_addr),
        ("log-opts", running.log_opt != new.log_opt),
        (
            "default-ulimits",
            running.default_ulimit != new.default_ulimit,
        ),
        ("web-admin", running.web_admin != new.web_admin),
        (
            "web-sample-interval",
            running.web_sample_interval != new.web_sample_interval,
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect()
}

/// Reloads the configuration at every SIGHUP.
fn spawn_reload_on_hangup(
    hangup: Option<tokio::signal::unix::Signal>,
    reload: Reload,
    running: DaemonArgs,
) {
    let Some(mut hup) = hangup else {
        tracing::warn!("no SIGHUP handler: the configuration cannot be reloaded");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received, reloading the configuration");
            reload.reload(&running);
        }
    });
}

/// The daemon's signal handlers, installed before anything is bound so
/// that no signal finds the default action (which kills the process).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    /// Taken by the reload task; `None` when it could not be installed.
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).ok(),
        })
    }

    /// Resolves on SIGTERM or SIGINT.
    async fn stopped(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}
