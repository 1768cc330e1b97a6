//! A plugin's HTTP answer, parsed as it arrives in time linear in its
//! size: the end of the head is looked for only in the new bytes, the
//! head is parsed once, and a chunked body is taken chunk by chunk from
//! where the last read stopped. (Parsing the whole buffer after every read
//! let a plugin that drips an endless head, or one-byte chunks, keep a
//! core busy for the call's whole timeout.) The head and each chunk-size
//! line are bounded; the caller bounds the whole answer.

/// The longest head a plugin may send (Docker's are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size line (hex digits and extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// What a read gave: more is to come, or the whole answer.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    More,
    Done(u16, Vec<u8>),
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    /// Where the next chunk-size line starts, and the body so far.
    Chunked {
        cursor: usize,
        body: Vec<u8>,
    },
    ToEof,
}

#[derive(Debug)]
struct Head {
    status: u16,
    body_start: usize,
    framing: Framing,
}

/// An answer being read.
#[derive(Debug, Default)]
pub(super) struct AnswerParser {
    raw: Vec<u8>,
    /// How far the search for the head's end has looked.
    scanned: usize,
    head: Option<Head>,
}

impl AnswerParser {
    /// Bytes read so far.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Takes `bytes` read from the plugin.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Step, String> {
        self.raw.extend_from_slice(bytes);
        if self.head.is_none() {
            let from = self.scanned.saturating_sub(3);
            let Some(at) = find(&self.raw[from..], b"\r\n\r\n") else {
                self.scanned = self.raw.len();
                if self.raw.len() > MAX_HEAD {
                    return Err(format!("an answer head longer than {MAX_HEAD} bytes"));
                }
                return Ok(Step::More);
            };
            self.head = Some(parse_head(&self.raw, from + at)?);
        }
        self.progress()
    }

    /// The answer at the end of the connection.
    pub fn finish(mut self) -> Result<(u16, Vec<u8>), String> {
        let closed = || "the connection closed mid-answer".to_string();
        match &self.head {
            None => Err(closed()),
            Some(Head {
                status,
                body_start,
                framing: Framing::ToEof,
            }) => Ok((*status, self.raw[*body_start..].to_vec())),
            Some(_) => match self.progress()? {
                Step::Done(status, body) => Ok((status, body)),
                Step::More => Err(closed()),
            },
        }
    }

    fn progress(&mut self) -> Result<Step, String> {
        let raw = &self.raw;
        let Some(head) = &mut self.head else {
            return Ok(Step::More);
        };
        match &mut head.framing {
            Framing::Length(n) => Ok(match raw.len() >= head.body_start + *n {
                true => Step::Done(head.status, raw[head.body_start..][..*n].to_vec()),
                false => Step::More,
            }),
            Framing::ToEof => Ok(Step::More),
            Framing::Chunked { cursor, body } => loop {
                let rest = &raw[*cursor..];
                let line = &rest[..rest.len().min(MAX_CHUNK_LINE + 2)];
                let Some(eol) = find(line, b"\r\n") else {
                    if rest.len() > MAX_CHUNK_LINE {
                        return Err("a chunk-size line too long".into());
                    }
                    return Ok(Step::More);
                };
                let size = chunk_size(&rest[..eol])?;
                if size == 0 {
                    return Ok(Step::Done(head.status, std::mem::take(body)));
                }
                if rest.len() < eol + 2 + size + 2 {
                    return Ok(Step::More);
                }
                body.extend_from_slice(&rest[eol + 2..][..size]);
                *cursor += eol + 2 + size + 2;
            },
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn chunk_size(line: &[u8]) -> Result<usize, String> {
    let text = std::str::from_utf8(line).unwrap_or("");
    let text = text.split(';').next().unwrap_or("").trim();
    let size = usize::from_str_radix(text, 16).map_err(|_| format!("bad chunk size {text:?}"))?;
    match size <= super::http::MAX_ANSWER as usize {
        true => Ok(size),
        false => Err(format!("a chunk of {size} bytes")),
    }
}

/// The status line and headers ending at `end` (the blank line).
fn parse_head(raw: &[u8], end: usize) -> Result<Head, String> {
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "non-UTF-8 head".to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line in {:?}", head.lines().next().unwrap_or("")))?;
    let mut framing = Framing::ToEof;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            framing = Framing::Chunked {
                cursor: end + 4,
                body: Vec::new(),
            };
        } else if name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked { .. })
        {
            let n = value
                .parse()
                .map_err(|_| "bad Content-Length".to_string())?;
            framing = Framing::Length(n);
        }
    }
    Ok(Head {
        status,
        body_start: end + 4,
        framing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fed in pieces of `piece` bytes; finished at `eof`.
    fn parsed(raw: &str, eof: bool, piece: usize) -> Result<Option<(u16, String)>, String> {
        let mut parser = AnswerParser::default();
        for part in raw.as_bytes().chunks(piece) {
            if let Step::Done(status, body) = parser.feed(part)? {
                return Ok(Some((status, String::from_utf8(body).unwrap())));
            }
        }
        match eof {
            true => parser
                .finish()
                .map(|(s, b)| Some((s, String::from_utf8(b).unwrap()))),
            false => Ok(None),
        }
    }

    #[test]
    fn answers_by_length_chunks_or_close_in_any_pieces() {
        for piece in [1, 3, 1000] {
            let by_len = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
            assert_eq!(parsed(by_len, false, piece), Ok(Some((200, "{}".into()))));
            assert_eq!(parsed(&by_len[..by_len.len() - 1], false, piece), Ok(None));
            let chunked =
                "HTTP/1.1 500 x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n";
            assert_eq!(
                parsed(chunked, false, piece),
                Ok(Some((500, "{\"a\"}".into())))
            );
            let closed = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{\"Err\":\"\"}";
            assert_eq!(parsed(closed, false, piece), Ok(None));
            assert_eq!(
                parsed(closed, true, piece),
                Ok(Some((200, "{\"Err\":\"\"}".into())))
            );
        }
    }

    #[test]
    fn garbage_and_endless_heads_are_malformed() {
        assert!(parsed("NOT HTTP\r\n\r\n", true, 100).is_err());
        assert!(parsed("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", true, 100).is_err());
        let huge = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(parsed(huge, false, 100).is_err());
        let endless = format!("HTTP/1.1 200 OK\r\n{}", "X-A: aaaa\r\n".repeat(10_000));
        assert!(parsed(&endless, false, 4096)
            .unwrap_err()
            .contains("head longer"));
        let long_line = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            "0".repeat(2000)
        );
        assert!(parsed(&long_line, false, 512)
            .unwrap_err()
            .contains("too long"));
        assert!(parsed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, 100).is_err());
    }

    #[test]
    fn one_byte_chunks_cost_linear_time() {
        let mut raw = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        raw.push_str(&"1\r\n \r\n".repeat(200_000));
        raw.push_str("0\r\n\r\n");
        let start = std::time::Instant::now();
        let (status, body) = parsed(&raw, false, 7).unwrap().unwrap();
        assert_eq!((status, body.len()), (200, 200_000));
        // Quadratic parsing took minutes for this; linear takes milliseconds.
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }
}
