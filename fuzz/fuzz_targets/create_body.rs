//! A container create body: `Config` and `HostConfig` decoded as the API
//! does, then every option check, the networking config and the published
//! ports. Never a panic.
#![no_main]
use berth_core::container::options::{parse_networking_config, ContainerOptions};
use berth_core::network::ports;
use berth_core::container::{ContainerConfig, HostConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(networking) = value.get("NetworkingConfig") {
        let _ = parse_networking_config(networking);
    }
    let Ok(config) = serde_json::from_value::<ContainerConfig>(value.clone()) else {
        return;
    };
    let host = value
        .get("HostConfig")
        .cloned()
        .and_then(|h| serde_json::from_value::<HostConfig>(h).ok())
        .unwrap_or_default();
    let publish_all = host.extra.get("PublishAllPorts") == Some(&serde_json::Value::Bool(true));
    if let Ok(requests) = ports::requests(
        host.extra.get("PortBindings"),
        publish_all,
        config.exposed_ports.as_ref(),
    ) {
        let _ = ports::allocate(&requests, &[], (40000, 40010), &|_| Ok(()));
    }
    if let Ok(options) = ContainerOptions::parse(&config, &host) {
        let _ = options.capabilities();
        let _ = options.resources.spec_resources();
        let _ = options.resources.rlimits();
    }
});
