//! Short strings from the outside: sizes (`-o size=`, `--thin-pool-size`),
//! device cgroup rules, security options, capability names, signals.
#![no_main]
use berth_core::container::options::{caps, devices, SecurityOptions};
use berth_core::sys::units::parse_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(bytes) = parse_size(text) {
        let _ = berth_core::sys::units::format_size(bytes);
    }
    let _ = devices::parse_cgroup_rule(text);
    let words: Vec<String> = text.split(',').map(str::to_string).collect();
    let _ = SecurityOptions::parse(&words);
    let _ = caps::normalize(&words);
    let _ = berth_core::container::parse_signal(text);
});
