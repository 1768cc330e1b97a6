//! Tests of regular files' bodies in the tar writer: holes kept as old
//! GNU sparse maps (extension blocks, merged maps) and read back byte-exact
//! by the tar crate and GNU tar, and entries that hold exactly the size
//! `fstat` gave while the file grows or shrinks underneath. A child of
//! `write_tests.rs`, whose helpers it uses.
//!
//! Apart from the other writer tests to keep each file short.

use super::*;
use std::os::unix::fs::FileExt;

use crate::archive::sparse::{data_segments, sparse_header, FileBody, MAX_SEGMENTS};

/// A sparse file of `size` bytes with `segments` distinct 4 KiB data
/// extents, 256 KiB apart; its expected bytes.
fn make_sparse(path: &Path, segments: u64, size: u64) -> Vec<u8> {
    let file = File::create(path).unwrap();
    let mut want = vec![0u8; size as usize + segments as usize * 256 * 1024];
    for i in 0..segments {
        let at = i * 256 * 1024 + 8192;
        let block: Vec<u8> = (0..4096u64).map(|j| (i * 7 + j % 251) as u8 | 1).collect();
        file.write_at(&block, at).unwrap();
        want[at as usize..at as usize + 4096].copy_from_slice(&block);
    }
    // Cut (or extended with a hole) to `size`.
    file.set_len(size).unwrap();
    want.truncate(size as usize);
    want
}

#[test]
fn sparse_files_with_many_segments_round_trip_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // 8 segments (one extension block), ending in a hole at an odd size;
    // 60 segments (three extension blocks), ending in data at an odd size.
    let few = make_sparse(&root.join("few"), 8, (3 << 20) + 77);
    let many = make_sparse(&root.join("many"), 60, 59 * 256 * 1024 + 8192 + 1000);
    set_xattr(&root.join("many"), "user.kept", b"yes");
    let after = b"after the sparse files".to_vec();
    std::fs::write(root.join("z-after"), &after).unwrap();
    let out = export(&root);
    assert!(
        out.len() < 512 * 1024,
        "holes are not written: {}",
        out.len()
    );
    let entries = read_back(&out);
    let by_name = |n: &str| entries.iter().find(|e| e.path == n).unwrap();
    for (name, want, segments) in [("few", &few, 8), ("many", &many, 60)] {
        check_sparse_entry(by_name(name), name, want, segments);
    }
    assert_eq!(
        by_name("many").xattrs,
        [("SCHILY.xattr.user.kept".into(), b"yes".to_vec())]
    );
    assert_eq!(by_name("z-after").data, after);

    let (listing, got) = gnu_extract(&out, dir.path());
    assert!(listing.contains("many"), "{listing}");
    for (name, want) in [("few", &few), ("many", &many)] {
        check_sparse_extracted(&got, name, want);
    }
    assert_eq!(std::fs::read(got.join("z-after")).unwrap(), after);
    assert_eq!(get_xattr(&got.join("many"), "user.kept"), b"yes");
}

/// The entry `e` of the sparse file `name` with `segments` data extents
/// and bytes `want`, as the tar crate reads it back.
fn check_sparse_entry(e: &Got, name: &str, want: &[u8], segments: u64) {
    assert_eq!(e.kind, EntryType::GNUSparse, "{name}");
    let gnu = e.header.as_gnu().unwrap();
    assert!(gnu.is_extended(), "{name}: more than 4 segments");
    assert_eq!(gnu.real_size().unwrap(), want.len() as u64);
    assert_eq!(
        e.header.entry_size().unwrap(),
        segments * 4096 - if name == "many" { 3096 } else { 0 }
    );
    assert!(
        e.data == want,
        "{name}: the tar crate reads it back byte-exact"
    );
}

/// The sparse file `name` as GNU tar extracted it into `got`: bytes
/// `want`, holes still holes.
fn check_sparse_extracted(got: &Path, name: &str, want: &[u8]) {
    assert!(
        std::fs::read(got.join(name)).unwrap() == want,
        "{name}: GNU tar byte-exact"
    );
    let meta = std::fs::metadata(got.join(name)).unwrap();
    assert!(
        meta.blocks() * 512 <= 1 << 20,
        "{name}: holes stay holes: {}",
        meta.blocks()
    );
}

#[test]
fn too_many_segments_are_merged_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many");
    let size = 40 * 256 * 1024 + 100;
    let want = make_sparse(&path, 40, size);
    let file = File::open(&path).unwrap();
    let all = data_segments(&file, size, MAX_SEGMENTS).unwrap();
    assert_eq!(all.len(), 40);
    let merged = data_segments(&file, size, 4).unwrap();
    assert!(merged.len() <= 4, "{merged:?}");
    for pair in merged.windows(2) {
        assert!(
            pair[0].0 + pair[0].1 < pair[1].0,
            "in order, apart: {merged:?}"
        );
    }
    for (offset, len) in &all {
        assert!(merged
            .iter()
            .any(|(o, l)| o <= offset && offset + len <= o + l));
    }
    // And the entry made from a merged map reads back whole.
    let mut header = header_from(&file.metadata().unwrap());
    let prefix = sparse_header(&mut header, &merged, size);
    let mut body = FileBody::new(&file, prefix, merged);
    let mut builder = Builder::new(Vec::new());
    builder.append_data(&mut header, "many", &mut body).unwrap();
    let entries = read_back(&builder.into_inner().unwrap());
    assert!(entries[0].data == want);
}

/// Changes files the moment their header goes out, as a container
/// writing to the volume during the export could.
struct Meddler {
    out: Vec<u8>,
    root: PathBuf,
}

impl Write for Meddler {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() == 512 {
            let name = &buf[..100];
            let named = |n: &[u8]| name.starts_with(n) && name[n.len()] == 0;
            if named(b"a-grows") {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(self.root.join("a-grows"))
                    .unwrap();
                f.write_all(&[b'G'; 1 << 20]).unwrap();
            } else if named(b"b-shrinks") {
                File::options()
                    .write(true)
                    .open(self.root.join("b-shrinks"))
                    .unwrap()
                    .set_len(10)
                    .unwrap();
            } else if named(b"c-sparse-shrinks") {
                File::options()
                    .write(true)
                    .open(self.root.join("c-sparse-shrinks"))
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn files_that_grow_are_cut_and_files_that_shrink_are_padded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (grows, shrinks, sparse) = make_changing(&root);
    let mut meddler = Meddler {
        out: Vec::new(),
        root: root.clone(),
    };
    let bytes = write_tree(&root, &mut meddler, &|_| false).unwrap();
    assert_eq!(
        bytes,
        (grows.len() + shrinks.len() + sparse.len() + 6 + 11) as u64
    );
    assert_eq!(
        std::fs::metadata(root.join("a-grows")).unwrap().len(),
        100_000 + (1 << 20)
    );
    let entries = read_back(&meddler.out);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "./",
            "a-grows",
            "b-shrinks",
            "c-sparse-shrinks",
            "d-after",
            "e-dir",
            "e-dir/f"
        ]
    );
    assert!(entries[1].data == grows, "cut at the size it had");
    let mut padded = shrinks[..10].to_vec();
    padded.resize(shrinks.len(), 0);
    assert!(entries[2].data == padded, "padded with zeros");
    assert_eq!(entries[3].kind, EntryType::GNUSparse);
    assert!(entries[3].data.len() == sparse.len() && entries[3].data.iter().all(|b| *b == 0));
    assert_eq!(entries[4].data, b"intact");
    assert_eq!(entries[6].data, b"also intact");
    let (_, got) = gnu_extract(&meddler.out, dir.path());
    assert_eq!(std::fs::read(got.join("e-dir/f")).unwrap(), b"also intact");
    assert!(std::fs::read(got.join("b-shrinks")).unwrap() == padded);
}

/// Files under `root` that the `Meddler` changes: `a-grows`,
/// `b-shrinks` and the sparse `c-sparse-shrinks` (their bytes returned
/// in that order), then `d-after` and `e-dir/f`, left alone.
fn make_changing(root: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let grows: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("a-grows"), &grows).unwrap();
    let shrinks: Vec<u8> = (0..100_001u32).map(|i| (i % 241) as u8 | 1).collect();
    std::fs::write(root.join("b-shrinks"), &shrinks).unwrap();
    let sparse = make_sparse(&root.join("c-sparse-shrinks"), 6, 2 << 20);
    std::fs::write(root.join("d-after"), b"intact").unwrap();
    std::fs::create_dir(root.join("e-dir")).unwrap();
    std::fs::write(root.join("e-dir/f"), b"also intact").unwrap();
    (grows, shrinks, sparse)
}

#[test]
fn a_file_entry_holds_exactly_the_size_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"0123456789").unwrap();
    let file = File::open(&path).unwrap();
    let meta = file.metadata().unwrap();
    let mut writer = TreeWriter::new(Vec::new());
    writer.file(&file, &meta, 4, Path::new("grew")).unwrap();
    writer.file(&file, &meta, 700, Path::new("shrank")).unwrap();
    writer.file(&file, &meta, 10, Path::new("same")).unwrap();
    assert_eq!(writer.bytes, 714);
    let entries = read_back(&writer.builder.into_inner().unwrap());
    assert_eq!(entries[0].data, b"0123");
    let mut shrank = b"0123456789".to_vec();
    shrank.resize(700, 0);
    assert_eq!(entries[1].data, shrank);
    assert_eq!(entries[2].data, b"0123456789");
}
