//! `docker import -c` change lines (Dockerfile instructions): never a
//! panic.
#![no_main]
use berth_core::image::changes;
use berth_core::image::config::RunConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let _ = changes::apply(&RunConfig::default(), &lines);
});
