//! Terminal window sizes (`TIOCSWINSZ`), for TTY containers and execs.

use std::os::fd::{AsRawFd, BorrowedFd};

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    pub height: u16,
    pub width: u16,
}

/// Sets the size of the terminal behind `fd` (master or slave); the
/// foreground process group gets `SIGWINCH`.
pub fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer given.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_pty_takes_the_size() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let size = WindowSize {
            height: 33,
            width: 99,
        };
        set_window_size(pty.master.as_fd(), size).unwrap();
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (33, 99));
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(set_window_size(null.as_fd(), size).is_err());
    }
}
