//! `-v` specs (text) and `--mount` objects (JSON): never a panic; what
//! parses has an absolute, clean destination.
#![no_main]
use berth_core::container::mounts::{parse_api_mount, parse_bind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = parse_bind(text) {
        assert!(spec.destination.starts_with('/'), "{spec:?}");
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(spec) = parse_api_mount(&value) {
            assert!(spec.destination.starts_with('/'), "{spec:?}");
        }
    }
});
