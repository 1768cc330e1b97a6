//! The mount table, /proc/self/mountinfo, read as bytes.
//!
//! Read as bytes because a mount point need not be UTF-8: read as text, one
//! such mount anywhere on the host made the whole table unreadable, and a
//! caller that took "unreadable" for "nothing mounted" deleted through a
//! mount inside a volume. A caller that decides whether something may be
//! deleted gets the read error ([`mount_points_under`]); the others treat
//! it as before.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// How mount events propagate to and from a mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// In a peer group (`shared:N`), maybe also a slave.
    Shared,
    /// Receives from a master (`master:N`) only.
    Slave,
    Private,
}

/// The table, whole.
fn read_table() -> std::io::Result<Vec<u8>> {
    std::fs::read("/proc/self/mountinfo")
}

/// One line: its fields before the ` - ` separator, and the filesystem
/// type after it.
struct MountLine<'a> {
    fields: Vec<&'a [u8]>,
    fstype: &'a [u8],
}

impl<'a> MountLine<'a> {
    /// `None` for a line without a separator or a mount point field. The
    /// separator cannot occur inside a field: mountinfo escapes spaces.
    fn parse(line: &'a [u8]) -> Option<Self> {
        let sep = line.windows(3).position(|w| w == b" - ")?;
        let fields: Vec<&[u8]> = line[..sep].split(|b| *b == b' ').collect();
        let fstype = line[sep + 3..].split(|b| *b == b' ').next()?;
        fields.get(4)?;
        Some(MountLine { fields, fstype })
    }

    fn point(&self) -> PathBuf {
        PathBuf::from(OsString::from_vec(unescape(self.fields[4])))
    }

    /// From the optional fields between the mount options and the separator.
    fn propagation(&self) -> Propagation {
        let optional = self.fields.get(6..).unwrap_or_default();
        if optional.iter().any(|f| f.starts_with(b"shared:")) {
            Propagation::Shared
        } else if optional.iter().any(|f| f.starts_with(b"master:")) {
            Propagation::Slave
        } else {
            Propagation::Private
        }
    }
}

fn lines(table: &[u8]) -> impl Iterator<Item = MountLine<'_>> {
    table.split(|b| *b == b'\n').filter_map(MountLine::parse)
}

/// Whether `path` is listed as a mount point (false if the table cannot
/// be read).
pub(super) fn listed(path: &Path) -> bool {
    let Ok(table) = read_table() else {
        return false;
    };
    let wanted = path.as_os_str().as_bytes();
    let found = lines(&table).any(|l| unescape(l.fields[4]) == wanted);
    found
}

/// Every mount point at or under `dir`, once per mount (a folder with two
/// filesystems stacked on it is listed twice), from one read of the table.
/// An unreadable table is an error: callers decide from this whether a
/// folder may be deleted.
pub fn mount_points_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let table = read_table()?;
    Ok(lines(&table)
        .map(|l| l.point())
        .filter(|point| point.starts_with(dir))
        .collect())
}

/// The mount point holding `path` (the deepest one; the last mounted of
/// equals) and its propagation.
pub fn propagation_of(path: &Path) -> Option<(PathBuf, Propagation)> {
    let table = read_table().ok()?;
    let mut best: Option<(PathBuf, Propagation)> = None;
    for line in lines(&table) {
        let point = line.point();
        let deeper = best
            .as_ref()
            .is_none_or(|(b, _)| point.components().count() >= b.components().count());
        if path.starts_with(&point) && deeper {
            best = Some((point, line.propagation()));
        }
    }
    best
}

/// Mount points of every filesystem of type `fstype` (`cgroup`,
/// `cgroup2`, …); none if the table cannot be read.
pub fn mounts_of_type(fstype: &str) -> Vec<PathBuf> {
    let table = read_table().unwrap_or_default();
    lines(&table)
        .filter(|l| l.fstype == fstype.as_bytes())
        .map(|l| l.point())
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (field[i], octal) {
            (b'\\', Some(d)) if d[0] <= b'3' => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &[u8]) -> MountLine<'_> {
        MountLine::parse(text).unwrap()
    }

    #[test]
    fn propagation_is_read_from_the_optional_fields() {
        let shared = line(b"25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw");
        let slave = line(b"26 25 0:5 / /a\\040b rw master:3 - tmpfs t rw");
        let private = line(b"27 25 0:6 / /p rw - tmpfs t rw");
        let both = line(b"28 25 0:7 / /q rw shared:4 master:2 - tmpfs t rw");
        assert_eq!(
            (shared.point(), shared.propagation()),
            ("/".into(), Propagation::Shared)
        );
        assert_eq!(
            (slave.point(), slave.propagation()),
            ("/a b".into(), Propagation::Slave)
        );
        assert_eq!(private.propagation(), Propagation::Private);
        assert_eq!(both.propagation(), Propagation::Shared);
    }

    #[test]
    fn escapes_are_decoded_and_bytes_kept() {
        assert_eq!(unescape(b"/a\\040b"), b"/a b");
        assert_eq!(unescape(b"/plain"), b"/plain");
        assert_eq!(unescape(b"/t\\011\\012\\134"), b"/t\t\n\\");
        // Not an escape: left as it is.
        assert_eq!(unescape(b"/x\\9zz\\"), b"/x\\9zz\\");
        let odd = line(b"29 25 0:8 / /v/\xff\xfe rw - tmpfs t rw");
        assert_eq!(odd.point().as_os_str().as_bytes(), b"/v/\xff\xfe");
    }

    #[test]
    fn types_are_read_after_the_separator() {
        let v1 =
            line(b"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu");
        let v2 = line(b"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw");
        assert_eq!(v1.fstype, b"cgroup");
        assert_eq!(v2.fstype, b"cgroup2");
        assert!(MountLine::parse(b"no separator here").is_none());
        assert!(MountLine::parse(b"1 2 - tmpfs").is_none());
    }

    #[test]
    fn the_root_is_listed_and_a_table_is_read() {
        assert!(listed(Path::new("/")));
        assert!(mount_points_under(Path::new("/"))
            .unwrap()
            .contains(&PathBuf::from("/")));
    }
}
