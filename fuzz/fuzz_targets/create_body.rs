//! A container create body: `Config` and `HostConfig` decoded as the API
//! does, then every option check. Never a panic.
#![no_main]
use berth_core::container::options::{check_networking_config, ContainerOptions};
use berth_core::container::{ContainerConfig, HostConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(networking) = value.get("NetworkingConfig") {
        let _ = check_networking_config(networking);
    }
    let Ok(config) = serde_json::from_value::<ContainerConfig>(value.clone()) else {
        return;
    };
    let host = value
        .get("HostConfig")
        .cloned()
        .and_then(|h| serde_json::from_value::<HostConfig>(h).ok())
        .unwrap_or_default();
    if let Ok(options) = ContainerOptions::parse(&config, &host) {
        let _ = options.capabilities();
        let _ = options.resources.spec_resources();
        let _ = options.resources.rlimits();
    }
});
