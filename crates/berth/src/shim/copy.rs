//! `berth copy-shim` (hidden): one `docker cp` operation run from inside
//! the container's root. The helper chroots into the container's root
//! (a running container's `/proc/PID/root`, after joining its mount
//! namespace; a stopped one's root filesystem, mounted with its volumes in
//! a private mount namespace of the helper's own), so every path and every
//! symlink — planted, or swapped in during the copy — resolves inside the
//! container: nothing of the host can be read or written (moby's
//! `chrootarchive` does the same).
//!
//! Operations: `stat` (JSON on stdout), `get` (a tar of the path on
//! stdout, entries named after its last component), `put` (a tar on stdin
//! extracted into the folder). Exit codes tell the daemon the class of a
//! failure: 2 not found, 3 not a folder, 4 would replace a folder by a
//! non-folder (or the reverse), 1 anything else; the reason is on stderr.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_core::archive::extract::{unpack_complete_with, UnpackOptions};
use berth_core::archive::ArchiveError;
use berth_core::container::copy::{CopyBind, CopyExit, PathStat};
use clap::{Args, ValueEnum};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// What to do.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CopyOp {
    Stat,
    Get,
    Put,
}

/// Arguments the daemon passes.
#[derive(Debug, Args)]
pub struct CopyShimArgs {
    #[arg(long, value_enum)]
    op: CopyOp,
    /// The path in the container (absolute).
    #[arg(long)]
    path: String,
    /// A running container: its first process.
    #[arg(long)]
    pid: Option<i32>,
    /// A stopped container: its root filesystem, mounted with `overlay`
    /// from these options (`lowerdir=…,upperdir=…,workdir=…`).
    #[arg(long)]
    overlay: Option<String>,
    /// Where the overlay is mounted (in the helper's namespace only).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// A stopped container's volumes and binds, JSON `[CopyBind]`.
    #[arg(long)]
    binds: Option<String>,
    /// `put`: a folder is never replaced by a non-folder, nor the reverse.
    #[arg(long)]
    keep_kinds: bool,
    /// `put`: owner `uid:gid` for every entry.
    #[arg(long)]
    owner: Option<String>,
}

/// Runs the helper; returns its exit code.
pub fn run(args: CopyShimArgs) -> i32 {
    let result = enter_root(&args).and_then(|()| match args.op {
        CopyOp::Stat => stat(&args.path),
        CopyOp::Get => get(&args.path),
        CopyOp::Put => put(&args),
    });
    match result {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("{message}");
            code as i32
        }
    }
}

type Failed = (CopyExit, String);

fn other(message: impl std::fmt::Display) -> Failed {
    (CopyExit::Other, message.to_string())
}

/// Chroots into the container's root (see the module doc).
fn enter_root(args: &CopyShimArgs) -> Result<(), Failed> {
    // Before the container's mount namespace hides the host's /proc.
    berth_core::archive::pin_proc_fd_dir().map_err(|e| other(format!("/proc/self/fd: {e}")))?;
    let root = match (args.pid, &args.rootfs) {
        (Some(pid), _) => join_running(pid)?,
        (None, Some(rootfs)) => mount_stopped(args, rootfs)?,
        _ => return Err(other("neither --pid nor --rootfs given")),
    };
    nix::unistd::fchdir(root.as_raw_fd()).map_err(other)?;
    nix::unistd::chroot(".").map_err(other)?;
    nix::unistd::chdir("/").map_err(other)
}

/// The root of a running container, in its mount namespace.
fn join_running(pid: i32) -> Result<OwnedFd, Failed> {
    let open = |p: String| {
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(|e| other(format!("{p}: {e}")))
    };
    let root = open(format!("/proc/{pid}/root"))?;
    let ns = open(format!("/proc/{pid}/ns/mnt"))?;
    setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|e| other(format!("setns: {e}")))?;
    Ok(root)
}

/// A stopped container's root filesystem with its binds, mounted in a
/// mount namespace of this process only (gone when it exits).
fn mount_stopped(args: &CopyShimArgs, rootfs: &Path) -> Result<OwnedFd, Failed> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| other(format!("unshare: {e}")))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| other(format!("making mounts private: {e}")))?;
    let overlay = args
        .overlay
        .as_deref()
        .ok_or_else(|| other("no --overlay"))?;
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(overlay),
    )
    .map_err(|e| other(format!("mounting the root filesystem: {e}")))?;
    let binds: Vec<CopyBind> = match &args.binds {
        Some(json) => serde_json::from_str(json).map_err(other)?,
        None => Vec::new(),
    };
    for bind in &binds {
        mount_bind(rootfs, bind)?;
    }
    std::fs::File::open(rootfs)
        .map(OwnedFd::from)
        .map_err(other)
}

/// Binds `bind.source` at its destination, resolved inside `rootfs`
/// (a symlink there cannot send it elsewhere). A destination that cannot
/// be made is left out: the copy then sees the root filesystem there.
fn mount_bind(rootfs: &Path, bind: &CopyBind) -> Result<(), Failed> {
    let rel = bind.destination.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(());
    }
    let source_is_dir = Path::new(&bind.source).is_dir();
    if source_is_dir {
        let _ = berth_core::sys::inroot::mkdir_all(rootfs, &bind.destination, 0o755);
    }
    let Ok(target) = berth_core::sys::inroot::open_beneath(rootfs, rel) else {
        return Ok(());
    };
    let target = format!("/proc/self/fd/{}", target.as_raw_fd());
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(
        Some(bind.source.as_str()),
        target.as_str(),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| other(format!("binding {}: {e}", bind.destination)))?;
    if bind.readonly {
        // Through the bind's own root: the first descriptor is the folder
        // beneath it, which is no mount point (EINVAL).
        let root = berth_core::sys::inroot::open_beneath(rootfs, rel)
            .map_err(|e| other(format!("{}: {e}", bind.destination)))?;
        let root_path = format!("/proc/self/fd/{}", root.as_raw_fd());
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(
            None::<&str>,
            root_path.as_str(),
            None::<&str>,
            ro,
            None::<&str>,
        )
        .map_err(|e| other(format!("read-only {}: {e}", bind.destination)))?;
    }
    Ok(())
}

/// `lstat` of the path (its last component not followed unless the path
/// ends with `/` or `/.`).
fn stat(path: &str) -> Result<(), Failed> {
    let meta = lstat(path)?;
    let link_target = if meta.file_type().is_symlink() {
        link_target(path)
    } else {
        String::new()
    };
    let stat = PathStat::from_metadata(base_name(path), &meta, link_target);
    let json = serde_json::to_string(&stat).map_err(other)?;
    println!("{json}");
    Ok(())
}

fn lstat(path: &str) -> Result<std::fs::Metadata, Failed> {
    std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => (CopyExit::NotFound, e.to_string()),
        _ => other(e),
    })
}

/// A symlink's target as an absolute path in the container: every link
/// on the way followed (inside the chroot, so inside the container), as
/// moby's `FollowSymlinkInScope`; one hop if the chain is dangling.
fn link_target(path: &str) -> String {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved.to_string_lossy().into_owned();
    }
    let Ok(target) = std::fs::read_link(path) else {
        return String::new();
    };
    let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
    berth_core::container::copy::clean_path(&parent.join(target).to_string_lossy())
}

/// The name a path's entries get in its archive (moby: `filepath.Base`).
fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            if path.ends_with('.') {
                ".".into()
            } else {
                "/".into()
            }
        })
}

/// Writes the path as a tar on stdout.
fn get(path: &str) -> Result<(), Failed> {
    lstat(path)?;
    let c_path = CString::new(path).map_err(other)?;
    let follow = path.ends_with('/') || path.ends_with("/.");
    let flags = libc::O_PATH | libc::O_CLOEXEC | if follow { 0 } else { libc::O_NOFOLLOW };
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags) };
    if fd < 0 {
        return Err(other(std::io::Error::last_os_error()));
    }
    // SAFETY: open returned a new descriptor we own.
    let node = unsafe { OwnedFd::from_raw_fd(fd) };
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout);
    berth_core::archive::write_named(node, Path::new(&base_name(path)), &mut out).map_err(other)?;
    out.flush().map_err(other)
}

/// Extracts the tar on stdin into the folder at the path.
fn put(args: &CopyShimArgs) -> Result<(), Failed> {
    let meta = std::fs::metadata(&args.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => (CopyExit::NotFound, e.to_string()),
        _ => other(e),
    })?;
    if !meta.is_dir() {
        return Err((
            CopyExit::NotADirectory,
            "extraction point is not a directory".into(),
        ));
    }
    let owner = match &args.owner {
        Some(o) => Some(parse_owner(o).ok_or_else(|| other(format!("bad owner {o}")))?),
        None => None,
    };
    let opts = UnpackOptions {
        whiteouts: false,
        keep_kinds: args.keep_kinds,
        owner,
    };
    let stdin = std::io::stdin().lock();
    unpack_complete_with(stdin, Path::new(&args.path), &opts).map_err(|e| match e {
        ArchiveError::Hostile(m) if m.starts_with("cannot overwrite") => {
            (CopyExit::KindConflict, m)
        }
        other_error => other(other_error),
    })?;
    Ok(())
}

fn parse_owner(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}
