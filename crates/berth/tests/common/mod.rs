//! Test fixture: the real `berth daemon` binary on a temporary root and
//! socket. Dropping it stops the daemon by PID (SIGTERM, then SIGKILL),
//! unmounts anything left under its root and removes the root, whether the
//! test passed or not.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestDaemon {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub sock: PathBuf,
    child: Child,
}

impl TestDaemon {
    /// Starts a daemon and waits until its socket answers.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-test.")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path().join("root");
        let sock = dir.path().join("api.sock");
        let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("daemon")
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .arg("--root")
            .arg(&root)
            .arg("--pidfile")
            .arg(dir.path().join("berth.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berth daemon");
        let daemon = TestDaemon {
            dir: Some(dir),
            root,
            sock,
            child,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not start; log:\n{}", self.log());
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        let dir = self.dir.as_ref().expect("dir").path();
        std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
    }

    /// The socket as a path string.
    pub fn sock_str(&self) -> String {
        self.sock.display().to_string()
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop();
        unmount_under(&self.root);
        if std::thread::panicking() {
            eprintln!("daemon log:\n{}", self.log());
        }
        drop(self.dir.take());
    }
}

/// Unmounts every mount at or below `root`, deepest first.
pub fn unmount_under(root: &Path) {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = root.display().to_string();
    let mut mounts: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
}
