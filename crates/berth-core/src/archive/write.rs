//! Writes a folder tree as a tar stream that GNU tar and berth's own
//! extraction read back whole: owners and modes (numeric), times, symlinks
//! as links, hard links as links (each inode's data once), device nodes and
//! FIFOs, holes in sparse files (GNU sparse), and extended attributes as PAX
//! `SCHILY.xattr.*` records (what GNU tar `--xattrs` writes).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header, HeaderMode};

/// Writes every entry under `root` (not `root` itself), in name order, to
/// `out`; entries whose top-level name `skip` accepts are left out. Returns
/// the bytes of file data written. An error from `out` (a client that went
/// away) ends the walk at once.
pub fn write_tree<W: Write>(
    root: &Path,
    out: W,
    skip: &dyn Fn(&std::ffi::OsStr) -> bool,
) -> std::io::Result<u64> {
    let mut builder = Builder::new(out);
    builder.mode(HeaderMode::Complete);
    builder.follow_symlinks(false);
    builder.sparse(true);
    let mut writer = TreeWriter {
        builder,
        links: HashMap::new(),
        bytes: 0,
    };
    for entry in sorted_entries(root)? {
        if !skip(entry.as_os_str()) {
            writer.walk(root, Path::new(&entry))?;
        }
    }
    writer.builder.into_inner()?.flush()?;
    Ok(writer.bytes)
}

/// One stream's state: the first path written for each hard-linked inode.
struct TreeWriter<W: Write> {
    builder: Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    bytes: u64,
}

impl<W: Write> TreeWriter<W> {
    /// Writes `rel` (relative to `root`) and, for a folder, what it holds.
    fn walk(&mut self, root: &Path, rel: &Path) -> std::io::Result<()> {
        let path = root.join(rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let key = (meta.dev(), meta.ino());
        if !meta.is_dir() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&key) {
                return self.hard_link(&meta, rel, &first.clone());
            }
            self.links.insert(key, rel.to_path_buf());
        }
        self.xattrs(&path, rel)?;
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        if kind.is_socket() {
            // As GNU tar does: a socket is a live endpoint, not data.
            tracing::debug!(path = %path.display(), "socket left out of the archive");
            return Ok(());
        }
        if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
            return self.special(&meta, rel);
        }
        self.builder.append_path_with_name(&path, rel)?;
        if meta.is_file() {
            self.bytes += meta.len();
        }
        if meta.is_dir() {
            for name in sorted_entries(&path)? {
                self.walk(root, &rel.join(name))?;
            }
        }
        Ok(())
    }

    /// A FIFO or device node (the tar crate names these by their host
    /// path, so the header is made here).
    fn special(&mut self, meta: &std::fs::Metadata, rel: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        header.set_entry_type(match () {
            _ if kind.is_fifo() => EntryType::Fifo,
            _ if kind.is_char_device() => EntryType::Char,
            _ => EntryType::Block,
        });
        let rdev = meta.rdev();
        header.set_device_major(libc::major(rdev))?;
        header.set_device_minor(libc::minor(rdev))?;
        header.set_size(0);
        self.builder.append_data(&mut header, rel, std::io::empty())
    }

    /// A hard link entry to the first path of the same inode.
    fn hard_link(
        &mut self,
        meta: &std::fs::Metadata,
        rel: &Path,
        first: &Path,
    ) -> std::io::Result<()> {
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        header.set_entry_type(EntryType::Link);
        header.set_size(0);
        self.builder.append_link(&mut header, rel, first)
    }

    /// A PAX header with the entry's extended attributes, if it has any.
    fn xattrs(&mut self, path: &Path, rel: &Path) -> std::io::Result<()> {
        let attrs = read_xattrs(path)?;
        if attrs.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (name, value) in attrs {
            let key = [b"SCHILY.xattr.".as_slice(), &name].concat();
            records.extend(pax_record(&key, &value));
        }
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_path(pax_name(rel))?;
        header.set_mode(0o644);
        header.set_size(records.len() as u64);
        header.set_cksum();
        self.builder.append(&header, records.as_slice())
    }
}

/// The names in `dir`, sorted (a stable order makes equal trees give equal
/// streams).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    Ok(names)
}

/// A PAX header's own name, as GNU tar makes it (short enough for ustar).
fn pax_name(rel: &Path) -> PathBuf {
    let base = rel.file_name().map(|n| n.as_bytes()).unwrap_or(b"entry");
    let base = String::from_utf8_lossy(&base[..base.len().min(80)]).into_owned();
    Path::new("PaxHeaders.0").join(base)
}

/// `"<len> <key>=<value>\n"`, where `<len>` counts the whole record,
/// itself included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + body.to_string().len();
    while len != body + len.to_string().len() {
        len += 1; // the length's own digits carried it over a power of ten
    }
    let mut record = format!("{len} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// `(name, value)` of every extended attribute of `path` (not following a
/// symlink).
fn read_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let c_name = CString::new(name)?;
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: valid path, name and buffer.
        let len = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((name.to_vec(), value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"hi\n").unwrap();
        std::fs::hard_link(root.join("a/b/f"), root.join("hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        std::fs::File::create(root.join("sparse"))
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let mut out = Vec::new();
        let bytes = write_tree(&root, &mut out, &|_| false).unwrap();
        assert_eq!(bytes, 3 + (64 << 20), "apparent sizes, the hard link once");
        assert!(
            out.len() < 64 * 1024,
            "the hole is not written: {} bytes",
            out.len()
        );
        let mut archive = tar::Archive::new(out.as_slice());
        let kinds: Vec<(String, EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        let names: Vec<&str> = kinds.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["a", "a/b", "a/b/f", "fifo", "hard", "link", "sparse"]
        );
        assert_eq!(kinds[4].1, EntryType::Link);
        assert_eq!(kinds[5].1, EntryType::Symlink);
        assert_eq!(kinds[3].1, EntryType::Fifo);
    }
}
