//! An archive as a volume import or an image layer reads it: decompressed
//! (gzip/zstd/plain), through the tar guard, extracted into a fresh folder.
//! Never a panic, never a write outside that folder, bounded memory.
#![no_main]
use berth_core::archive::{decompress, extract, TarGuard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(plain) = decompress(data) else {
        return;
    };
    let outer = tempfile::tempdir().expect("temporary folder");
    let dest = outer.path().join("dest");
    std::fs::create_dir(&dest).expect("dest");
    let mut archive = tar::Archive::new(TarGuard::new(plain));
    let _ = extract::unpack(&mut archive, &dest, true);
    // Nothing may appear beside the destination.
    let beside: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("dest")]);
});
