//! Detach keys (`--detach-keys`, default Ctrl-P Ctrl-Q): the byte sequence
//! that, typed into a TTY session's stdin, ends the session and leaves the
//! process running. Parsed as moby's `term.ToBytes`; matched across reads
//! by [`DetachScanner`].

/// Docker's default, `ctrl-p,ctrl-q`.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// Parses `ctrl-p,ctrl-q`-style keys: comma-separated, each a single
/// character or `ctrl-` and one of `a-z @ [ \ ] ^ _`.
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>, String> {
    let invalid = || format!("Invalid detach keys ({keys}) provided");
    let mut out = Vec::new();
    for key in keys.split(',') {
        let key = key.trim();
        if key.len() == 1 && key.is_ascii() {
            out.push(key.as_bytes()[0]);
            continue;
        }
        let rest = key.strip_prefix("ctrl-").ok_or_else(invalid)?;
        let [c] = rest.as_bytes() else {
            return Err(invalid());
        };
        let code = match c {
            b'a'..=b'z' => c - b'a' + 1,
            b'@' => 0,
            b'[' => 27,
            b'\\' => 28,
            b']' => 29,
            b'^' => 30,
            b'_' => 31,
            _ => return Err(invalid()),
        };
        out.push(code);
    }
    if out.is_empty() {
        return Err(invalid());
    }
    Ok(out)
}

/// Finds the detach sequence in a stream of reads. Bytes that might begin
/// the sequence are held back until it is clear they do not; a sequence
/// that stops matching releases them, as moby's escape proxy does.
#[derive(Debug)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

/// What one read of stdin comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned {
    /// Pass these bytes on (possibly none).
    Forward(Vec<u8>),
    /// The keys were typed: forward these bytes first, then detach.
    Detach(Vec<u8>),
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachScanner { keys, matched: 0 }
    }

    /// Feeds one read.
    pub fn feed(&mut self, input: &[u8]) -> Scanned {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return Scanned::Detach(out);
                }
                continue;
            }
            // The held-back prefix was not the sequence after all.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return Scanned::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Scanned::Forward(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_like_moby() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-_").unwrap(),
            vec![b'a', 0, 31]
        );
        assert_eq!(parse_detach_keys("ctrl-[").unwrap(), vec![27]);
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-pq", "shift-a", "a,,b"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_is_not_forwarded() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ls\n"), Scanned::Forward(b"ls\n".to_vec()));
        assert_eq!(s.feed(&[b'x', 16]), Scanned::Forward(b"x".to_vec()));
        assert_eq!(s.feed(&[17, b'y']), Scanned::Detach(Vec::new()));
    }

    #[test]
    fn a_broken_sequence_is_released() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(&[16]), Scanned::Forward(Vec::new()));
        assert_eq!(s.feed(b"a"), Scanned::Forward(vec![16, b'a']));
        assert_eq!(s.feed(&[16, 16, 17]), Scanned::Detach(vec![16]));
        let mut one = DetachScanner::new(vec![b'q']);
        assert_eq!(one.feed(b"abq"), Scanned::Detach(b"ab".to_vec()));
    }
}
