//! Tests of the tar writer (`write.rs`) as a whole: every kind of entry,
//! the root entry, symlinks never followed, entries swapped or removed
//! while the tree is walked, skipped names and long names. Each stream is
//! read back by the tar crate and, where it matters, extracted by GNU tar.
//! Also the helpers for that, shared with the tests of file bodies (holes,
//! files that grow or shrink) in `write_tests_sparse.rs`.
//!
//! Kept out of `write.rs` so the writer itself stays short to read.

use super::*;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::archive::fd::{open_node, retry};

#[path = "write_tests_sparse.rs"]
mod sparse;

/// One entry as the tar crate reads it back.
struct Got {
    path: String,
    kind: EntryType,
    header: Header,
    link: Option<PathBuf>,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_back(archive: &[u8]) -> Vec<Got> {
    let mut archive = tar::Archive::new(archive);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut xattrs = Vec::new();
            if let Some(pax) = e.pax_extensions().unwrap() {
                // (The tar crate's reader cuts records at newlines, so a
                // value holding one is not read back here; GNU tar reads it.)
                for ext in pax.map_while(Result::ok) {
                    xattrs.push((ext.key().unwrap().to_string(), ext.value_bytes().to_vec()));
                }
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Got {
                path: e.path().unwrap().display().to_string(),
                kind: e.header().entry_type(),
                header: e.header().clone(),
                link: e.link_name().unwrap().map(|l| l.into_owned()),
                data,
                xattrs,
            }
        })
        .collect()
}

fn export(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_tree(root, &mut out, &|_| false).unwrap();
    out
}

/// Runs GNU tar; its stderr must be empty (no warning either).
fn gnu_tar(args: &[&str], archive: &Path, dir: &Path) -> String {
    let out = Command::new("tar")
        .args(args)
        .arg("-f")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "tar {args:?}: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lists `archive` with `tar --xattrs -tv` and extracts it into a new
/// folder with `tar --xattrs --xattrs-include='*' -xp`.
fn gnu_extract(archive: &[u8], work: &Path) -> (String, PathBuf) {
    let file = work.join("archive.tar");
    std::fs::write(&file, archive).unwrap();
    let listing = gnu_tar(&["--xattrs", "-tv"], &file, work);
    let out = work.join("out");
    std::fs::create_dir(&out).unwrap();
    gnu_tar(&["--xattrs", "--xattrs-include=*", "-xp"], &file, &out);
    (listing, out)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    crate::sys::xattr::set(path, name.as_bytes(), value).unwrap();
}

fn get_xattr(path: &Path, name: &str) -> Vec<u8> {
    crate::sys::xattr::get(path, name.as_bytes())
        .unwrap()
        .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
}

fn open_root(root: &Path) -> OwnedFd {
    let c_root = CString::new(root.as_os_str().as_bytes()).unwrap();
    retry(|| unsafe { libc::open(c_root.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) }).unwrap()
}

#[test]
fn pax_records_count_their_own_length() {
    assert_eq!(pax_record(b"a", b"b"), b"6 a=b\n");
    let r = pax_record(b"k", &[b'v'; 94]);
    assert_eq!(r.len(), 101);
    assert!(r.starts_with(b"101 k="));
    let r = pax_record(b"k", &[b'v'; 93]);
    assert_eq!(r.len(), 99);
    assert!(r.starts_with(b"99 k="));
}

#[test]
fn writes_links_specials_holes_and_xattrs_gnu_tar_reads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    make_every_kind(&root);
    let mut out = Vec::new();
    let bytes = write_tree(&root, &mut out, &|_| false).unwrap();
    assert_eq!(bytes, 3 + (64 << 20), "apparent sizes, the hard link once");
    assert!(
        out.len() < 64 * 1024,
        "the hole is not written: {} bytes",
        out.len()
    );
    check_every_kind_read_back(&read_back(&out));
    let (listing, got) = gnu_extract(&out, dir.path());
    assert!(listing.contains("a/b/f"), "{listing}");
    check_every_kind_extracted(&got);
}

/// A tree under `root` with a file in nested folders, xattrs (one with a
/// newline, a NUL and `=` in its value), a hard link, a symlink, a FIFO,
/// a character device and a 64 MiB file that is all hole.
fn make_every_kind(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/f"), b"hi\n").unwrap();
    set_xattr(&root.join("a/b/f"), "user.note", b"v =1");
    std::fs::write(root.join("bin"), b"").unwrap();
    set_xattr(&root.join("bin"), "user.bin", b"\n\0=\xff");
    set_xattr(&root.join("a"), "user.dir", b"d");
    std::fs::hard_link(root.join("a/b/f"), root.join("hard")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    // A copy of /dev/zero: its entry is a header, never an endless read.
    nix::sys::stat::mknod(
        &root.join("zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        libc::makedev(1, 5),
    )
    .unwrap();
    std::fs::File::create(root.join("sparse"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
}

/// What the tar crate reads back from the tree `make_every_kind` made.
fn check_every_kind_read_back(entries: &[Got]) {
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        ["./", "a", "a/b", "a/b/f", "bin", "fifo", "hard", "link", "sparse", "zero"]
    );
    let kind = |name: &str| entries.iter().find(|e| e.path == name).unwrap();
    assert_eq!(kind("./").kind, EntryType::Directory);
    assert_eq!(kind("fifo").kind, EntryType::Fifo);
    assert_eq!(kind("hard").kind, EntryType::Link);
    assert_eq!(kind("hard").link.clone().unwrap(), Path::new("a/b/f"));
    assert_eq!(kind("link").kind, EntryType::Symlink);
    assert_eq!(kind("link").link.clone().unwrap(), Path::new("/etc/passwd"));
    assert_eq!(kind("sparse").kind, EntryType::GNUSparse);
    assert_eq!(kind("sparse").data.len(), 64 << 20);
    assert!(kind("sparse").data.iter().all(|b| *b == 0));
    let zero = &kind("zero").header;
    assert_eq!(zero.entry_type(), EntryType::Char);
    assert_eq!(zero.device_major().unwrap(), Some(1));
    assert_eq!(zero.device_minor().unwrap(), Some(5));
    assert_eq!(zero.size().unwrap(), 0);
    assert_eq!(
        kind("a").xattrs,
        [("SCHILY.xattr.user.dir".into(), b"d".to_vec())]
    );
    assert_eq!(
        kind("a/b/f").xattrs,
        [("SCHILY.xattr.user.note".into(), b"v =1".to_vec())]
    );
    assert_eq!(
        kind("a/b/f").header.mode().unwrap(),
        0o644,
        "permission bits only"
    );
}

/// What GNU tar extracted into `got` from the tree `make_every_kind` made.
fn check_every_kind_extracted(got: &Path) {
    assert_eq!(std::fs::read(got.join("a/b/f")).unwrap(), b"hi\n");
    let f = std::fs::metadata(got.join("a/b/f")).unwrap();
    assert_eq!(f.ino(), std::fs::metadata(got.join("hard")).unwrap().ino());
    assert_eq!(
        std::fs::read_link(got.join("link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(std::fs::symlink_metadata(got.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        std::fs::metadata(got.join("zero")).unwrap().rdev(),
        libc::makedev(1, 5)
    );
    let sparse = std::fs::metadata(got.join("sparse")).unwrap();
    assert_eq!((sparse.len(), sparse.blocks()), (64 << 20, 0));
    assert_eq!(get_xattr(&got.join("a/b/f"), "user.note"), b"v =1");
    assert_eq!(get_xattr(&got.join("a"), "user.dir"), b"d");
    assert_eq!(get_xattr(&got.join("bin"), "user.bin"), b"\n\0=\xff");
}

#[test]
fn the_root_entry_comes_first_with_its_owner_mode_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), b"x").unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&root, Some(999), Some(998)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    File::open(&root).unwrap().set_modified(when).unwrap();
    let out = export(&root);
    let entries = read_back(&out);
    let first = &entries[0].header;
    assert_eq!(entries[0].path, "./");
    assert_eq!(first.entry_type(), EntryType::Directory);
    assert_eq!(first.mode().unwrap(), 0o700);
    assert_eq!((first.uid().unwrap(), first.gid().unwrap()), (999, 998));
    assert_eq!(first.mtime().unwrap(), 1_600_000_000);
    assert_eq!(entries[1].path, "f");
    let (listing, got) = gnu_extract(&out, dir.path());
    assert!(listing.lines().next().unwrap().contains("./"), "{listing}");
    let meta = std::fs::metadata(&got).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mtime()),
        (999, 998, 1_600_000_000)
    );
}

#[test]
fn a_symlink_to_a_folder_outside_is_archived_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host secret").unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("link-file")).unwrap();
    let out = export(&root);
    let entries = read_back(&out);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["./", "link", "link-file"]);
    assert_eq!(entries[1].kind, EntryType::Symlink);
    assert_eq!(entries[1].link.clone().unwrap(), outside);
    assert!(!out.windows(11).any(|w| w == b"host secret"));
}

#[test]
fn an_entry_swapped_after_it_was_opened_is_read_from_what_was_opened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), b"host secret").unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), b"volume data").unwrap();
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::write(root.join("d/inner"), b"inner").unwrap();
    let root_fd = open_root(&root);
    let f = open_node(root_fd.as_fd(), OsStr::new("f"), Path::new("f"))
        .unwrap()
        .unwrap();
    let d = open_node(root_fd.as_fd(), OsStr::new("d"), Path::new("d"))
        .unwrap()
        .unwrap();
    // The container swaps both for symlinks to host paths.
    std::fs::rename(root.join("f"), root.join("f-moved")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("f")).unwrap();
    std::fs::rename(root.join("d"), root.join("d-moved")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("d")).unwrap();
    let mut writer = TreeWriter::new(Vec::new());
    assert!(writer.entry(f, "f".into()).unwrap().is_none());
    let mut frame = writer.entry(d, "d".into()).unwrap().unwrap();
    assert_eq!(frame.names, ["inner"]);
    let inner = open_node(frame.dir.as_fd(), OsStr::new("inner"), Path::new("d/inner"));
    frame.next = 1;
    writer
        .entry(inner.unwrap().unwrap(), "d/inner".into())
        .unwrap();
    // Gone since the folder was listed: left out, no error.
    assert!(
        open_node(root_fd.as_fd(), OsStr::new("gone"), Path::new("gone"))
            .unwrap()
            .is_none()
    );
    let out = writer.builder.into_inner().unwrap();
    let entries = read_back(&out);
    assert_eq!(entries[0].data, b"volume data");
    assert_eq!(entries[0].kind, EntryType::Regular);
    assert_eq!(entries[1].kind, EntryType::Directory);
    assert_eq!(entries[2].data, b"inner");
    assert!(!out.windows(11).any(|w| w == b"host secret"));
}

#[test]
fn sockets_are_left_out_with_their_links_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(root.join("a-sock")).unwrap();
    set_xattr(&root.join("a-sock"), "trusted.sock", b"s");
    std::fs::hard_link(root.join("a-sock"), root.join("b-sock-link")).unwrap();
    std::fs::write(root.join("c-file"), b"c").unwrap();
    let out = export(&root);
    let entries = read_back(&out);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["./", "c-file"]);
    assert!(
        entries[1].xattrs.is_empty(),
        "nothing of the socket's carried over"
    );
    assert_eq!(entries[1].kind, EntryType::Regular);
    let (_, got) = gnu_extract(&out, dir.path());
    assert_eq!(std::fs::read(got.join("c-file")).unwrap(), b"c");
}

#[test]
fn skipped_top_level_names_and_long_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let long = "n".repeat(120);
    std::fs::create_dir_all(root.join(&long).join("x".repeat(150))).unwrap();
    std::fs::write(root.join(".staging"), b"no").unwrap();
    std::os::unix::fs::symlink("t".repeat(300), root.join("long-target")).unwrap();
    let mut out = Vec::new();
    write_tree(&root, &mut out, &|n| n == ".staging").unwrap();
    let entries = read_back(&out);
    let names: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(
        names,
        [
            "./".to_string(),
            "long-target".into(),
            long.clone(),
            format!("{long}/{}", "x".repeat(150)),
        ]
    );
    assert_eq!(
        entries[1].link.clone().unwrap(),
        Path::new(&"t".repeat(300))
    );
    let (_, got) = gnu_extract(&out, dir.path());
    assert!(got.join(&long).join("x".repeat(150)).is_dir());
    assert_eq!(
        std::fs::read_link(got.join("long-target")).unwrap(),
        Path::new(&"t".repeat(300))
    );
}

#[test]
fn a_container_swapping_entries_meanwhile_never_gets_host_data_in() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"HOST-SECRET-7d1e";
    let root = make_swappable(dir.path(), secret);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| swap_until(&root, &stop));
        for _ in 0..300 {
            let out = export(&root);
            assert!(!out.windows(secret.len()).any(|w| w == secret));
            let entries = read_back(&out);
            assert!(entries.iter().all(|e| !e.path.contains("shadow")));
            assert!(entries.len() >= 7);
        }
        stop.store(true, Ordering::Relaxed);
    });
}

/// Under `dir`: `outside/shadow` holding `secret`, and the tree `root`
/// (returned) whose `d`, `f` and `g` each have an `-alt` twin to swap
/// with: a symlink to `outside`, a symlink to `shadow`, a FIFO.
fn make_swappable(dir: &Path, secret: &[u8]) -> PathBuf {
    let outside = dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("shadow"), secret).unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/inner"), b"volume").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("d-alt")).unwrap();
    std::fs::write(root.join("f"), b"volume").unwrap();
    std::os::unix::fs::symlink(outside.join("shadow"), root.join("f-alt")).unwrap();
    std::fs::write(root.join("g"), b"volume").unwrap();
    nix::unistd::mkfifo(
        &root.join("g-alt"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    root
}

/// Swaps each of `root`'s entries with its `-alt` twin (`renameat2`
/// `RENAME_EXCHANGE`), over and over, until `stop` is set.
fn swap_until(root: &Path, stop: &AtomicBool) {
    let names = [("d", "d-alt"), ("f", "f-alt"), ("g", "g-alt")];
    let c = |n: &str| CString::new(root.join(n).as_os_str().as_bytes()).unwrap();
    let pairs: Vec<_> = names.iter().map(|(a, b)| (c(a), c(b))).collect();
    while !stop.load(Ordering::Relaxed) {
        for (a, b) in &pairs {
            // SAFETY: valid paths.
            let r = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            assert_eq!(r, 0, "{}", io::Error::last_os_error());
        }
    }
}
