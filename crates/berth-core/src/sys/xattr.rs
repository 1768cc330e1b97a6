//! Extended attributes of a path, never following a final symlink (the
//! `l*xattr` calls): set one, read one, list the names.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> std::io::Result<CString> {
    Ok(CString::new(path.as_os_str().as_bytes())?)
}

/// Sets attribute `name` of `path` to `value`.
pub fn set(path: &Path, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    let (c_path, c_name) = (c_path(path)?, CString::new(name)?);
    // SAFETY: valid NUL-terminated strings and a live byte slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The value of attribute `name` of `path`; `None` if it has none.
pub fn get(path: &Path, name: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let (c_path, c_name) = (c_path(path)?, CString::new(name)?);
    let mut value = vec![0u8; 64 * 1024];
    // SAFETY: valid strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    value.truncate(n as usize);
    Ok(Some(value))
}

/// The names of `path`'s attributes (none where the filesystem has none).
pub fn names(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let c_path = c_path(path)?;
    let mut list = vec![0u8; 64 * 1024];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(c_path.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(Vec::new()),
            _ => Err(e),
        };
    }
    Ok(list[..n as usize]
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(get(&file, b"user.k").unwrap(), None);
        set(&file, b"user.k", b"v\n1").unwrap();
        assert_eq!(
            get(&file, b"user.k").unwrap().as_deref(),
            Some(&b"v\n1"[..])
        );
        assert!(names(&file).unwrap().contains(&b"user.k".to_vec()));
    }
}
