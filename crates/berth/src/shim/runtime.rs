//! The two ways a shim runs a container: the embedded runtime (youki's
//! libcontainer, in this process) or an external OCI runtime binary
//! (`runc`-compatible `create`/`start`/`delete`).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use super::ShimArgs;

/// A created container.
pub enum ShimContainer {
    Embedded(Box<Container>),
    External {
        binary: String,
        root: PathBuf,
        id: String,
        pid: i32,
    },
}

/// The container's stdio: pipes (and its stdin), or a terminal the
/// runtime makes and sends to the console socket at this path.
pub enum Stdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Console(PathBuf),
}

/// Creates the container (its first process waits for `start`), with the
/// given stdio.
pub fn create(args: &ShimArgs, stdio: Stdio) -> Result<ShimContainer, String> {
    match &args.runtime {
        None => create_embedded(args, stdio),
        Some(binary) => create_external(args, binary, stdio),
    }
}

fn create_embedded(args: &ShimArgs, stdio: Stdio) -> Result<ShimContainer, String> {
    std::fs::create_dir_all(&args.runtime_root)
        .map_err(|e| format!("creating runtime root: {e}"))?;
    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.runtime_root)
        .map_err(|e| e.to_string())?
        .with_executor(super::exec::ProcessExecutor::default());
    builder = match stdio {
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => builder
            .with_stdin(stdin)
            .with_stdout(stdout)
            .with_stderr(stderr),
        Stdio::Console(path) => builder.with_console_socket(Some(path)),
    };
    let container = builder
        .validate_id()
        .map_err(|e| e.to_string())?
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| docker_wording(&e.to_string()))?;
    Ok(ShimContainer::Embedded(Box::new(container)))
}

fn create_external(args: &ShimArgs, binary: &str, stdio: Stdio) -> Result<ShimContainer, String> {
    let root = args.runtime_root.join(sanitize(binary));
    std::fs::create_dir_all(&root).map_err(|e| format!("creating runtime root: {e}"))?;
    let pid_file = args.state_dir.join("init.pid");
    let mut command = Command::new(binary);
    command
        .arg("--root")
        .arg(&root)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    match stdio {
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            command
                .stdin(std::process::Stdio::from(stdin))
                .stdout(std::process::Stdio::from(stdout))
                .stderr(std::process::Stdio::from(stderr));
        }
        Stdio::Console(path) => {
            command.arg("--console-socket").arg(path);
        }
    }
    let output = command
        .arg(&args.id)
        .status()
        .map_err(|e| format!("running {binary}: {e}"))?;
    if !output.success() {
        return Err(format!(
            "{binary} create failed ({output}); see the container log"
        ));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("{binary} create wrote no pid file"))?;
    Ok(ShimContainer::External {
        binary: binary.to_string(),
        root,
        id: args.id.clone(),
        pid,
    })
}

fn sanitize(binary: &str) -> String {
    binary.rsplit('/').next().unwrap_or(binary).to_string()
}

/// libcontainer reports a missing program at create; Docker's wording
/// (which the docker CLI maps to exit code 127) names it at start.
pub(super) fn docker_wording(message: &str) -> String {
    if let Some(rest) = message.split("executable '").nth(1) {
        if let Some(program) = rest.split('\'').next() {
            if message.contains("not found in $PATH") {
                return format!("exec: \"{program}\": executable file not found in $PATH");
            }
            if message.contains("does not have correct permissions") {
                return format!("exec: \"{program}\": permission denied");
            }
        }
    }
    message.to_string()
}

impl ShimContainer {
    /// Host PID of the container's first process.
    pub fn init_pid(&self) -> i32 {
        match self {
            ShimContainer::Embedded(c) => c.pid().map_or(0, |p| p.as_raw()),
            ShimContainer::External { pid, .. } => *pid,
        }
    }

    /// Lets the first process run the container's program.
    pub fn start(&mut self) -> Result<(), String> {
        match self {
            ShimContainer::Embedded(c) => c.start().map_err(|e| e.to_string()),
            ShimContainer::External {
                binary, root, id, ..
            } => {
                let status = Command::new(&*binary)
                    .arg("--root")
                    .arg(&*root)
                    .arg("start")
                    .arg(&*id)
                    .status();
                match status {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("{binary} start failed ({s})")),
                    Err(e) => Err(format!("running {binary}: {e}")),
                }
            }
        }
    }

    /// Kills whatever is left and removes the runtime's state and cgroup.
    pub fn destroy(&mut self) {
        match self {
            ShimContainer::Embedded(c) => {
                // libcontainer deletes its state folder with remove_dir_all,
                // which goes through mounts: detach any made inside it first
                // (their files stay where they are), and keep the folder if
                // the mount table cannot be read.
                if let Err(e) = detach_mounts_under(&c.root) {
                    eprintln!("shim: container state kept: {e}");
                    return;
                }
                if let Err(e) = c.delete(true) {
                    eprintln!("shim: deleting container state: {e}");
                }
            }
            ShimContainer::External {
                binary, root, id, ..
            } => {
                let _ = Command::new(&*binary)
                    .arg("--root")
                    .arg(&*root)
                    .arg("delete")
                    .arg("--force")
                    .arg(&*id)
                    .status();
            }
        }
    }
}

/// Lazily unmounts every filesystem mounted at or under `dir`, deepest
/// first, so that deleting `dir` cannot reach their files.
fn detach_mounts_under(dir: &std::path::Path) -> Result<(), String> {
    let mut points = berth_core::sys::mount::mount_points_under(dir)
        .map_err(|e| format!("reading the mount table: {e}"))?;
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmounting {}: {e}", point.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_programs_are_worded_like_docker() {
        let lc = "failed to create container: exec process failed with error error in executing process : executable 'nope' not found in $PATH";
        assert_eq!(
            docker_wording(lc),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(docker_wording("other"), "other");
    }
}
