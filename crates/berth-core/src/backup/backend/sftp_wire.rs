//! SFTP version 3 on the wire (draft-ietf-secsh-filexfer-02, which
//! OpenSSH speaks): the requests berth sends, built into packets, and the
//! replies, parsed. Pure, unit-tested here; `sftp.rs` does the I/O.

/// Request and reply types.
pub mod kind {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
}

/// `OPEN` flags.
pub mod open {
    pub const READ: u32 = 0x01;
    pub const WRITE: u32 = 0x02;
    pub const CREAT: u32 = 0x08;
    pub const TRUNC: u32 = 0x10;
}

/// `STATUS` codes berth tells apart.
pub mod status {
    pub const OK: u32 = 0;
    pub const EOF: u32 = 1;
    pub const NO_SUCH_FILE: u32 = 2;
}

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// A request packet being built: length, type, id, then fields.
pub struct Packet(Vec<u8>);

impl Packet {
    /// A request of `kind` with `id` (INIT takes the version in its place).
    pub fn new(kind: u8, id: u32) -> Self {
        let mut buf = vec![0, 0, 0, 0, kind];
        buf.extend_from_slice(&id.to_be_bytes());
        Packet(buf)
    }

    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(&(v.len() as u32).to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }

    pub fn str(self, v: &str) -> Self {
        self.bytes(v.as_bytes())
    }

    /// Attributes with permissions only (or none).
    pub fn attrs(self, mode: Option<u32>) -> Self {
        match mode {
            Some(m) => self.u32(ATTR_PERMISSIONS).u32(m),
            None => self.u32(0),
        }
    }

    /// The finished packet, its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0
    }
}

/// Reads fields from a reply's body.
pub struct Fields<'a> {
    buf: &'a [u8],
}

/// A reply that does not parse.
#[derive(Debug, PartialEq)]
pub struct Malformed(pub &'static str);

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4, "a short u32")?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8, "a short u64")?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n, "a short string")
    }

    pub fn string(&mut self) -> Result<String, Malformed> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// Attributes: the size when given; the rest is skipped.
    pub fn attrs(&mut self) -> Result<Attrs, Malformed> {
        let flags = self.u32()?;
        let size = if flags & ATTR_SIZE != 0 {
            Some(self.u64()?)
        } else {
            None
        };
        if flags & ATTR_UIDGID != 0 {
            self.take(8, "short uid/gid")?;
        }
        let mode = if flags & ATTR_PERMISSIONS != 0 {
            Some(self.u32()?)
        } else {
            None
        };
        if flags & ATTR_ACMODTIME != 0 {
            self.take(8, "short times")?;
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(Attrs { size, mode })
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// What berth reads of a file's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Attrs {
    pub size: Option<u64>,
    pub mode: Option<u32>,
}

impl Attrs {
    /// Whether the mode says regular file (`S_IFREG`).
    pub fn is_file(&self) -> bool {
        self.mode.is_some_and(|m| m & 0o170000 == 0o100000)
    }
}

/// A parsed reply.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Status { code: u32, message: String },
    Handle(Vec<u8>),
    Data(Vec<u8>),
    Name(Vec<(String, Attrs)>),
    Attrs(Attrs),
}

/// Parses a reply packet (type byte onwards) into its id and reply.
pub fn parse_reply(packet: &[u8]) -> Result<(u32, Reply), Malformed> {
    let (&kind, body) = packet.split_first().ok_or(Malformed("an empty packet"))?;
    let mut f = Fields::new(body);
    let id = f.u32()?;
    let reply = match kind {
        kind::STATUS => Reply::Status {
            code: f.u32()?,
            message: if f.is_empty() {
                String::new()
            } else {
                f.string()?
            },
        },
        kind::HANDLE => Reply::Handle(f.bytes()?.to_vec()),
        kind::DATA => Reply::Data(f.bytes()?.to_vec()),
        kind::ATTRS => Reply::Attrs(f.attrs()?),
        kind::NAME => {
            let count = f.u32()?;
            let mut names = Vec::with_capacity(count.min(4096) as usize);
            for _ in 0..count {
                let name = f.string()?;
                let _long = f.bytes()?;
                names.push((name, f.attrs()?));
            }
            Reply::Name(names)
        }
        _ => return Err(Malformed("an unknown reply type")),
    };
    Ok((id, reply))
}

/// Parses `VERSION` (type byte onwards): the version and the names of
/// the extensions the server offers.
pub fn parse_version(packet: &[u8]) -> Result<(u32, Vec<String>), Malformed> {
    let (&kind, body) = packet.split_first().ok_or(Malformed("an empty packet"))?;
    if kind != kind::VERSION {
        return Err(Malformed("no VERSION first"));
    }
    let mut f = Fields::new(body);
    let version = f.u32()?;
    let mut extensions = Vec::new();
    while !f.is_empty() {
        extensions.push(f.string()?);
        f.bytes()?;
    }
    Ok((version, extensions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed() {
        let p = Packet::new(kind::OPEN, 7)
            .str("a")
            .u32(open::READ)
            .attrs(None)
            .finish();
        assert_eq!(
            p,
            [0, 0, 0, 18, 3, 0, 0, 0, 7, 0, 0, 0, 1, b'a', 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    fn reply(kind: u8, id: u32, rest: Packet) -> Vec<u8> {
        // Reuse the builder: drop its length and make the type `kind`.
        let mut body = rest.finish()[4..].to_vec();
        body[0] = kind;
        body[1..5].copy_from_slice(&id.to_be_bytes());
        body
    }

    #[test]
    fn replies_parse() {
        let status = reply(
            kind::STATUS,
            3,
            Packet::new(0, 0).u32(2).str("No such file").str(""),
        );
        assert_eq!(
            parse_reply(&status).unwrap(),
            (
                3,
                Reply::Status {
                    code: status::NO_SUCH_FILE,
                    message: "No such file".into()
                }
            )
        );
        // A NAME with one entry: size and permissions, uid/gid and times skipped.
        let name = Packet::new(0, 0)
            .u32(1)
            .str("ab")
            .str("-rw-r--r-- ab")
            .u32(ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME)
            .u64(460)
            .u32(0)
            .u32(0)
            .u32(0o100644)
            .u32(1)
            .u32(2);
        let (id, parsed) = parse_reply(&reply(kind::NAME, 9, name)).unwrap();
        assert_eq!(id, 9);
        let Reply::Name(entries) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(entries[0].0, "ab");
        assert_eq!(entries[0].1.size, Some(460));
        assert!(entries[0].1.is_file());
    }

    #[test]
    fn truncated_replies_are_errors() {
        let data = reply(kind::DATA, 1, Packet::new(0, 0).u32(100).u32(1));
        assert!(parse_reply(&data).is_err());
        assert!(parse_reply(&[]).is_err());
        assert!(parse_reply(&[42, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn version_lists_extensions() {
        let mut v = Packet::new(kind::VERSION, 3)
            .str("posix-rename@openssh.com")
            .str("1")
            .finish()[4..]
            .to_vec();
        v[0] = kind::VERSION;
        let (version, ext) = parse_version(&v).unwrap();
        assert_eq!(version, 3);
        assert_eq!(ext, vec!["posix-rename@openssh.com".to_string()]);
    }
}
