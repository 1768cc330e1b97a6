//! `berth completion SHELL` and `berth man DIR`: shell completions and man
//! pages generated from the clap definitions, so they never drift from
//! the commands (`scripts/setup --install` puts them in place).

use std::path::{Path, PathBuf};

use clap::{Args, Command, ValueEnum};

/// The shells `berth completion` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder to write the pages into (berth.1, berth-volume.1, …).
    pub dir: PathBuf,
}

/// Writes the completion script for `shell` to standard output (a reader
/// that goes away early, `| head`, is not an error).
pub fn completion(mut command: Command, args: &CompletionArgs) -> i32 {
    use clap_complete::shells;
    use std::io::Write;
    let mut script = Vec::new();
    match args.shell {
        Shell::Bash => clap_complete::generate(shells::Bash, &mut command, "berth", &mut script),
        Shell::Zsh => clap_complete::generate(shells::Zsh, &mut command, "berth", &mut script),
        Shell::Fish => clap_complete::generate(shells::Fish, &mut command, "berth", &mut script),
    }
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("berth completion: {e}");
            1
        }
        _ => 0,
    }
}

/// Writes one man page per command (hidden ones skipped) into the folder.
pub fn man(command: Command, args: &ManArgs) -> i32 {
    match write_pages(command, &args.dir) {
        Ok(count) => {
            println!("{count} pages written to {}", args.dir.display());
            0
        }
        Err(e) => {
            eprintln!("berth man: {e}");
            1
        }
    }
}

fn write_pages(command: Command, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut command = command;
    command.build();
    write_page(&command, "berth", dir)
}

/// The page of `command` (named `name`) and of its subcommands.
fn write_page(command: &Command, name: &str, dir: &Path) -> std::io::Result<usize> {
    let mut buffer = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .render(&mut buffer)?;
    std::fs::write(dir.join(format!("{name}.1")), buffer)?;
    let mut count = 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        count += write_page(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(count)
}
