//! `docker cp` (`HEAD|GET|PUT /containers/{id}/archive`): each operation
//! runs in `berth copy-shim`, which chroots into the container's root (see
//! that module), so a path never resolves outside it. A running container
//! is entered through its first process; a stopped one's root filesystem
//! and volumes are mounted in the helper's private mount namespace (its
//! device-backed volumes attached for the operation under an operation
//! mount id, released when it ends).

use std::io::{Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde::{Deserialize, Serialize};

use super::{ContainerError, ContainerRecord, ContainerService, Status};

/// Bytes after an archive's end read and dropped before answering.
const TRAILING_LIMIT: u64 = 64 << 20;

/// What `X-Docker-Container-Path-Stat` holds (moby's `PathStat`; `mode`
/// is Go's `os.FileMode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// A bind of a stopped container, for the helper to mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyBind {
    pub source: String,
    pub destination: String,
    pub readonly: bool,
}

/// The helper's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CopyExit {
    Other = 1,
    NotFound = 2,
    NotADirectory = 3,
    KindConflict = 4,
}

/// A copy failure, in moby's words.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("Could not find the file {path} in container {container}")]
    NotFound { path: String, container: String },
    #[error("extraction point is not a directory")]
    NotADirectory,
    #[error("{0}")]
    ReadOnly(&'static str),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl CopyError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            CopyError::NotFound { .. } => ErrorKind::NotFound,
            CopyError::NotADirectory => ErrorKind::InvalidArgument,
            CopyError::ReadOnly(_) => ErrorKind::Forbidden,
            CopyError::Failed(_) => ErrorKind::Internal,
            CopyError::Container(e) => e.kind(),
        }
    }
}

impl PathStat {
    /// From `lstat` metadata.
    pub fn from_metadata(name: String, meta: &std::fs::Metadata, link_target: String) -> Self {
        use std::os::unix::fs::MetadataExt;
        let mtime = chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        PathStat {
            name,
            size: meta.size() as i64,
            mode: go_file_mode(meta.mode()),
            mtime,
            link_target,
        }
    }
}

/// Go's `os.FileMode` of a Unix `st_mode`: permission bits plus Go's
/// type and special bits.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    for (bit, go) in [
        (libc::S_ISUID, 1 << 23),
        (libc::S_ISGID, 1 << 22),
        (libc::S_ISVTX, 1 << 20),
    ] {
        if st_mode & bit != 0 {
            mode |= go;
        }
    }
    mode
}

/// A path cleaned as Go's `filepath.Clean`, made absolute; a trailing
/// `/` or `/.` (which asks to follow a last symlink, or for a folder's
/// contents) is kept.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if out.len() > 1 && path.ends_with("/.") {
        out.push_str("/.");
    } else if out.len() > 1 && path.ends_with('/') {
        out.push('/');
    }
    out
}

/// Volumes attached for a copy: (volume, operation mount id).
type HeldMounts = Vec<(String, String)>;

/// How the helper reaches a container's root, and what to release after.
struct CopyTarget {
    args: Vec<String>,
    held: HeldMounts,
}

/// A `get` in progress: the tar on `stdout`; dropping it waits for the
/// helper and releases what the operation held.
pub struct CopyStream {
    pub stdout: ChildStdout,
    child: Child,
    service: std::sync::Arc<ContainerService>,
    held: Vec<(String, String)>,
    path: String,
    container: String,
}

impl CopyStream {
    /// Waits for the helper; its error if the archive was cut short.
    pub fn finish(mut self) -> Result<(), CopyError> {
        let result = wait_helper(&mut self.child, &self.path, &self.container);
        self.service.release_copy(&self.held);
        self.held.clear();
        result
    }
}

impl Drop for CopyStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.service.release_copy(&self.held);
    }
}

impl ContainerService {
    /// `HEAD /containers/{id}/archive?path=`.
    pub fn copy_stat(&self, name_or_id: &str, path: &str) -> Result<PathStat, CopyError> {
        let record = self.resolve(name_or_id)?;
        let target = self.copy_target(&record)?;
        let path = clean_path(path);
        let result = self.run_helper(&target, "stat", &path, &[], &record);
        self.release_copy(&target.held);
        let out = result?;
        serde_json::from_slice(&out).map_err(|e| CopyError::Failed(e.to_string()))
    }

    /// `GET /containers/{id}/archive?path=`: the path's stat and its tar.
    pub fn copy_get(
        self: &std::sync::Arc<Self>,
        name_or_id: &str,
        path: &str,
    ) -> Result<(PathStat, CopyStream), CopyError> {
        let stat = self.copy_stat(name_or_id, path)?;
        let record = self.resolve(name_or_id)?;
        let target = self.copy_target(&record)?;
        let path = clean_path(path);
        let spawned = self
            .helper_command(&target, "get", &path, &[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                self.release_copy(&target.held);
                return Err(CopyError::Failed(format!("spawning the copy helper: {e}")));
            }
        };
        let stdout = child.stdout.take().expect("piped");
        let stream = CopyStream {
            stdout,
            child,
            service: self.clone(),
            held: target.held,
            path,
            container: record.name.clone(),
        };
        Ok((stat, stream))
    }

    /// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`:
    /// extracts `input` (a tar) into the folder at `path`.
    pub fn copy_put(
        &self,
        name_or_id: &str,
        path: &str,
        keep_kinds: bool,
        copy_uid_gid: bool,
        input: &mut dyn Read,
    ) -> Result<(), CopyError> {
        let record = self.resolve(name_or_id)?;
        check_writable(&record, &clean_path(path))?;
        let mut extra = Vec::new();
        if keep_kinds {
            extra.push("--keep-kinds".to_string());
        }
        if copy_uid_gid && !record.config.user.is_empty() {
            let rootfs = self.paths(&record.id).rootfs();
            let user = super::user::resolve(&rootfs, &record.config.user)
                .map_err(|e| CopyError::Failed(e.to_string()))?;
            extra.extend(["--owner".into(), format!("{}:{}", user.uid, user.gid)]);
        }
        let target = self.copy_target(&record)?;
        let path = clean_path(path);
        let result = self.feed_helper(&target, &path, &extra, input, &record);
        self.release_copy(&target.held);
        result
    }

    /// How to enter the container: its process if running, else its root
    /// filesystem and binds (volumes attached for the operation).
    fn copy_target(&self, record: &ContainerRecord) -> Result<CopyTarget, CopyError> {
        if record.state.status == Status::Running {
            if let Some(pid) = record.state.pid {
                let args = vec!["--pid".into(), pid.raw().to_string()];
                return Ok(CopyTarget {
                    args,
                    held: Vec::new(),
                });
            }
        }
        let paths = self.paths(&record.id);
        paths.create()?;
        let image = self
            .images
            .resolve(&record.image_id)
            .map_err(ContainerError::from)?;
        let overlay = paths.overlay_options(&self.images.layer_paths(&image));
        let (binds, held) = self.copy_binds(record)?;
        let binds = serde_json::to_string(&binds).map_err(|e| CopyError::Failed(e.to_string()))?;
        let args = vec![
            "--rootfs".into(),
            paths.rootfs().display().to_string(),
            "--overlay".into(),
            overlay,
            "--binds".into(),
            binds,
        ];
        Ok(CopyTarget { args, held })
    }

    /// A stopped container's binds and volumes (tmpfs mounts have no
    /// content while it is stopped).
    fn copy_binds(
        &self,
        record: &ContainerRecord,
    ) -> Result<(Vec<CopyBind>, HeldMounts), CopyError> {
        let mut binds = Vec::new();
        let mut held = Vec::new();
        for m in &record.mounts {
            let source = match m.kind.as_str() {
                "bind" => m.source.clone(),
                "volume" if m.subpath.is_none() => {
                    let id = crate::volume::operation_mount_id("cp");
                    match self.volumes.mount(&m.name, &id) {
                        Ok(root) => {
                            held.push((m.name.clone(), id));
                            root.display().to_string()
                        }
                        Err(e) => {
                            self.release_copy(&held);
                            return Err(ContainerError::from(e).into());
                        }
                    }
                }
                _ => continue,
            };
            binds.push(CopyBind {
                source,
                destination: m.destination.clone(),
                readonly: !m.rw,
            });
        }
        Ok((binds, held))
    }

    fn release_copy(&self, held: &[(String, String)]) {
        for (volume, id) in held {
            if let Err(e) = self.volumes.unmount(volume, id) {
                tracing::warn!(volume = %volume, error = %e, "releasing a copy's mount");
            }
        }
    }

    fn helper_command(
        &self,
        target: &CopyTarget,
        op: &str,
        path: &str,
        extra: &[String],
    ) -> Command {
        let mut cmd = Command::new(&self.settings.shim_exe);
        cmd.arg("copy-shim")
            .arg("--op")
            .arg(op)
            .arg("--path")
            .arg(path)
            .args(&target.args)
            .args(extra);
        cmd
    }

    /// Runs the helper to the end; its stdout.
    fn run_helper(
        &self,
        target: &CopyTarget,
        op: &str,
        path: &str,
        extra: &[String],
        record: &ContainerRecord,
    ) -> Result<Vec<u8>, CopyError> {
        let out = self
            .helper_command(target, op, path, extra)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CopyError::Failed(format!("running the copy helper: {e}")))?;
        check_exit(out.status, &out.stderr, path, &record.name)?;
        Ok(out.stdout)
    }

    fn feed_helper(
        &self,
        target: &CopyTarget,
        path: &str,
        extra: &[String],
        input: &mut dyn Read,
        record: &ContainerRecord,
    ) -> Result<(), CopyError> {
        let mut child = self
            .helper_command(target, "put", path, extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CopyError::Failed(format!("spawning the copy helper: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        let copied = std::io::copy(input, &mut stdin).and_then(|_| stdin.flush());
        drop(stdin);
        let waited = wait_helper(&mut child, path, &record.name);
        // The helper's own error says more than the broken pipe it caused.
        waited?;
        match copied {
            // It stopped reading at the end-of-archive blocks; what follows
            // is padding (the docker CLI pads to 10 KiB records).
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                let rest = &mut input.take(TRAILING_LIMIT);
                let _ = std::io::copy(rest, &mut std::io::sink());
                Ok(())
            }
            Err(e) => Err(CopyError::Failed(format!("reading the archive: {e}"))),
            Ok(_) => Ok(()),
        }
    }
}

/// moby's checks before an extraction: a read-only root filesystem or a
/// read-only volume at the destination refuses it (by the path as given;
/// a symlink into a writable mount is not followed for this).
fn check_writable(record: &ContainerRecord, path: &str) -> Result<(), CopyError> {
    let under = |dest: &str| {
        let dest = dest.trim_end_matches('/');
        path == dest || path.starts_with(&format!("{dest}/"))
    };
    let mount = record
        .mounts
        .iter()
        .filter(|m| under(&m.destination))
        .max_by_key(|m| m.destination.len());
    match mount {
        Some(m) if !m.rw => Err(CopyError::ReadOnly("mounted volume is marked read-only")),
        Some(_) => Ok(()),
        None if record.host_config.extra.get("ReadonlyRootfs")
            == Some(&serde_json::Value::Bool(true)) =>
        {
            Err(CopyError::ReadOnly("container rootfs is marked read-only"))
        }
        None => Ok(()),
    }
}

fn wait_helper(child: &mut Child, path: &str, container: &str) -> Result<(), CopyError> {
    let mut stderr = Vec::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| CopyError::Failed(format!("waiting for the copy helper: {e}")))?;
    check_exit(status, &stderr, path, container)
}

fn check_exit(
    status: std::process::ExitStatus,
    stderr: &[u8],
    path: &str,
    container: &str,
) -> Result<(), CopyError> {
    let message = String::from_utf8_lossy(stderr).trim().to_string();
    match status.code() {
        Some(0) => Ok(()),
        Some(2) => Err(CopyError::NotFound {
            path: path.trim_end_matches("/.").to_string(),
            container: container.to_string(),
        }),
        Some(3) => Err(CopyError::NotADirectory),
        _ => Err(CopyError::Failed(if message.is_empty() {
            format!("the copy helper failed ({status})")
        } else {
            message
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_are_gos() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
    }

    #[test]
    fn paths_clean_like_go_and_keep_their_ending() {
        assert_eq!(clean_path("a/b"), "/a/b");
        assert_eq!(clean_path("/a/../../etc/passwd"), "/etc/passwd");
        assert_eq!(clean_path("/a/./b/"), "/a/b/");
        assert_eq!(clean_path("/a/b/."), "/a/b/.");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path(""), "/");
    }
}
