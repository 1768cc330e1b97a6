//! GNU tar's sparse files in POSIX (pax) archives, what `tar --sparse`
//! writes in its default format: the entry is a regular file named
//! `GNUSparseFile.<pid>/<name>` whose pax header carries the real name and
//! size and the map of data segments (the tar crate reads only the old
//! GNU `S` entries). Formats (GNU tar's manual, "Storing Sparse Files"):
//! - 1.0: `GNU.sparse.major=1`, `minor=0`, `name`, `realsize`; the map is
//!   at the start of the data, decimal numbers one per line (the count,
//!   then offset and size of each segment), padded to 512 bytes.
//! - 0.1: `GNU.sparse.map` = `off,size,off,size…`, `name`, `size`.
//! - 0.0: `GNU.sparse.offset` and `GNU.sparse.numbytes` records in turn.
//!
//! The data is the segments, back to back. A hostile map (segments out of
//! order or past the real size, sizes that do not add up to the data, a
//! real size over [`MAX_SPARSE_SIZE`], more than [`MAX_SEGMENTS`]) refuses
//! the archive.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::guard::MAX_SPARSE_SIZE;
use super::ArchiveError;

/// Most data segments of one sparse file.
pub const MAX_SEGMENTS: usize = 1 << 20;
/// Longest number line of a 1.0 map (u64 has 20 digits).
const MAX_DIGITS: usize = 20;

/// A pax sparse entry's real name, real size and map.
#[derive(Debug, PartialEq)]
pub struct PaxSparse {
    pub name: Option<Vec<u8>>,
    pub real_size: u64,
    /// `None`: the map is at the start of the data (format 1.0).
    map: Option<Vec<(u64, u64)>>,
}

/// The sparse description in `records` (pax key and value pairs, in
/// order), if the entry is a pax sparse file.
pub fn detect<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<PaxSparse>, ArchiveError> {
    let (mut major, mut name, mut real_size, mut map) = (None, None, None, None);
    // Format 0.0: each offset record is followed by its numbytes record.
    let mut pairs: Vec<(u64, Option<u64>)> = Vec::new();
    let unpaired = || hostile("GNU.sparse.offset and numbytes records do not pair");
    for (key, value) in records {
        match key {
            "GNU.sparse.major" => major = Some(number(value)?),
            "GNU.sparse.name" => name = Some(value.to_vec()),
            "GNU.sparse.realsize" | "GNU.sparse.size" => real_size = Some(number(value)?),
            "GNU.sparse.map" => map = Some(parse_map_list(value)?),
            "GNU.sparse.offset" if pairs.last().is_none_or(|p| p.1.is_some()) => {
                pairs.push((number(value)?, None));
            }
            "GNU.sparse.numbytes" => match pairs.last_mut() {
                Some(last) if last.1.is_none() => last.1 = Some(number(value)?),
                _ => return Err(unpaired()),
            },
            "GNU.sparse.offset" => return Err(unpaired()),
            _ => {}
        }
    }
    if major.is_some_and(|m| m > 1) {
        return Err(hostile(
            "a GNU sparse format berth does not know (major > 1)",
        ));
    }
    if map.is_none() && !pairs.is_empty() {
        if pairs.len() > MAX_SEGMENTS {
            return Err(hostile("a sparse map with too many segments"));
        }
        let paired: Option<Vec<(u64, u64)>> =
            pairs.into_iter().map(|(o, n)| Some((o, n?))).collect();
        map = Some(paired.ok_or_else(unpaired)?);
    }
    let sparse = major == Some(1) || map.is_some();
    if !sparse {
        return Ok(None);
    }
    let Some(real_size) = real_size else {
        return Err(hostile("a pax sparse entry without its real size"));
    };
    if real_size > MAX_SPARSE_SIZE {
        return Err(hostile(&format!(
            "a sparse file of {real_size} bytes is larger than berth accepts ({MAX_SPARSE_SIZE})"
        )));
    }
    Ok(Some(PaxSparse {
        name,
        real_size,
        map: if major == Some(1) { None } else { map },
    }))
}

/// Writes the entry's data (`input`, `data_len` bytes) into `file` at the
/// map's offsets and gives the file its real size; holes stay holes.
pub fn write(
    sparse: &PaxSparse,
    input: &mut impl Read,
    data_len: u64,
    file: &mut std::fs::File,
    target: &Path,
) -> Result<(), ArchiveError> {
    // Buffered: a 1.0 map is read a byte at a time; the entry's own reader
    // ends at the entry's end, so nothing past it is taken.
    let mut input = std::io::BufReader::with_capacity(64 << 10, input);
    let (map, map_len) = match &sparse.map {
        Some(map) => (map.clone(), 0),
        None => read_map_block(&mut input)?,
    };
    check_map(
        &map,
        sparse.real_size,
        data_len.saturating_sub(map_len),
        map_len <= data_len,
    )?;
    let io = |e| ArchiveError::io(target, e);
    for (offset, size) in map {
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let copied = std::io::copy(&mut input.by_ref().take(size), file).map_err(io)?;
        if copied != size {
            return Err(ArchiveError::tar(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a sparse file's data is cut short",
            )));
        }
    }
    file.set_len(sparse.real_size).map_err(io)
}

/// Segments in order, not overlapping, inside the real size, and adding
/// up to the data there is.
fn check_map(
    map: &[(u64, u64)],
    real_size: u64,
    data_len: u64,
    map_fits: bool,
) -> Result<(), ArchiveError> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, size) in map {
        let segment_end = offset.checked_add(size).filter(|e| *e <= real_size);
        match segment_end {
            Some(e) if offset >= end => end = e,
            _ => {
                return Err(hostile(
                    "a sparse map whose segments overlap or pass the file's end",
                ))
            }
        }
        total = total.saturating_add(size);
    }
    if !map_fits || total != data_len {
        return Err(hostile("a sparse map that does not match the entry's data"));
    }
    Ok(())
}

/// Reads a 1.0 map from the start of the data; returns it and the bytes
/// it took (padding to 512 included).
fn read_map_block(input: &mut impl Read) -> Result<(Vec<(u64, u64)>, u64), ArchiveError> {
    let mut taken = 0u64;
    let mut line = || -> Result<u64, ArchiveError> {
        let mut digits = Vec::new();
        loop {
            let mut byte = [0u8];
            input.read_exact(&mut byte).map_err(ArchiveError::tar)?;
            taken += 1;
            match byte[0] {
                b'\n' => return number(&digits),
                b if digits.len() < MAX_DIGITS => digits.push(b),
                _ => return Err(hostile("a sparse map line that is too long")),
            }
        }
    };
    let count = line()? as usize;
    if count > MAX_SEGMENTS {
        return Err(hostile("a sparse map with too many segments"));
    }
    let mut map = Vec::with_capacity(count);
    for _ in 0..count {
        map.push((line()?, line()?));
    }
    let padding = (512 - taken % 512) % 512;
    std::io::copy(&mut input.by_ref().take(padding), &mut std::io::sink())
        .map_err(ArchiveError::tar)?;
    Ok((map, taken + padding))
}

/// `off,size,off,size…` (format 0.1).
fn parse_map_list(value: &[u8]) -> Result<Vec<(u64, u64)>, ArchiveError> {
    let numbers = value
        .split(|b| *b == b',')
        .map(number)
        .collect::<Result<Vec<_>, _>>()?;
    if numbers.len() % 2 != 0 || numbers.len() / 2 > MAX_SEGMENTS {
        return Err(hostile(
            "a GNU.sparse.map that is not offset and size pairs",
        ));
    }
    Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Decimal digits only, as GNU tar reads them (no sign, no spaces).
fn number(value: &[u8]) -> Result<u64, ArchiveError> {
    let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
    digits
        .then(|| std::str::from_utf8(value).ok()?.parse().ok())
        .flatten()
        .ok_or_else(|| hostile("a GNU.sparse number that is not one"))
}

fn hostile(why: &str) -> ArchiveError {
    ArchiveError::Hostile(why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static [u8])> {
        pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    #[test]
    fn formats_are_recognised() {
        assert_eq!(detect(records(&[("path", "x")])).unwrap(), None);
        let one = detect(records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "dir/f"),
            ("GNU.sparse.realsize", "100"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(one.name.as_deref(), Some(&b"dir/f"[..]));
        assert_eq!((one.real_size, one.map), (100, None));
        let zero_one = detect(records(&[
            ("GNU.sparse.map", "0,10,50,5"),
            ("GNU.sparse.size", "60"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(zero_one.map, Some(vec![(0, 10), (50, 5)]));
        let zero_zero = detect(records(&[
            ("GNU.sparse.size", "60"),
            ("GNU.sparse.offset", "0"),
            ("GNU.sparse.numbytes", "10"),
            ("GNU.sparse.offset", "50"),
            ("GNU.sparse.numbytes", "5"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(zero_zero.map, zero_one.map);
    }

    #[test]
    fn hostile_descriptions_are_refused() {
        let without_size = records(&[("GNU.sparse.major", "1")]);
        assert!(detect(without_size).is_err());
        let huge = records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.realsize", "99999999999999999"),
        ]);
        assert!(detect(huge).is_err());
        assert!(detect(records(&[
            ("GNU.sparse.map", "1,2,3"),
            ("GNU.sparse.size", "9")
        ]))
        .is_err());
        assert!(detect(records(&[
            ("GNU.sparse.map", "x,2"),
            ("GNU.sparse.size", "9")
        ]))
        .is_err());
        // GNU tar reads plain digits only.
        let signed = records(&[("GNU.sparse.map", " 0,+3"), ("GNU.sparse.size", "9")]);
        assert!(detect(signed).is_err());
        let swapped = records(&[
            ("GNU.sparse.size", "9"),
            ("GNU.sparse.numbytes", "3"),
            ("GNU.sparse.offset", "0"),
        ]);
        assert!(detect(swapped).is_err(), "numbytes before its offset");
        let unknown = records(&[("GNU.sparse.major", "2"), ("GNU.sparse.realsize", "9")]);
        assert!(detect(unknown).is_err());
        assert!(
            check_map(&[(10, 5), (12, 1)], 100, 6, true).is_err(),
            "overlap"
        );
        assert!(
            check_map(&[(95, 10)], 100, 10, true).is_err(),
            "past the end"
        );
        assert!(
            check_map(&[(0, 5)], 100, 6, true).is_err(),
            "sizes do not add up"
        );
        assert!(check_map(&[(0, 5), (10, 1)], 100, 6, true).is_ok());
    }

    #[test]
    fn a_1_0_map_is_read_with_its_padding() {
        let mut data = b"2\n0\n3\n10\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcde");
        let mut input = &data[..];
        let (map, taken) = read_map_block(&mut input).unwrap();
        assert_eq!((map, taken), (vec![(0, 3), (10, 2)], 512));
        assert_eq!(input, b"abcde");
        let long = [b'1'; 30];
        assert!(read_map_block(&mut &long[..]).is_err());
        assert!(read_map_block(&mut &b"+1\n0\n3\n"[..]).is_err(), "a sign");
        assert!(read_map_block(&mut &b"1\r\n0\n3\n"[..]).is_err(), "a CR");
    }

    #[test]
    fn segments_land_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = std::fs::File::create(&path).unwrap();
        let sparse = PaxSparse {
            name: None,
            real_size: 20,
            map: Some(vec![(0, 3), (10, 2)]),
        };
        write(&sparse, &mut &b"abcde"[..], 5, &mut file, &path).unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[..3], b"abc");
        assert_eq!(&got[10..12], b"de");
        assert_eq!(got.len(), 20);
        assert!(got[3..10].iter().all(|b| *b == 0));
    }
}
