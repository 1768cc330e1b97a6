//! Networks: the model, address management (`ipam`, `cidr`), the service
//! (create, list, look-up, remove, prune, the predefined `bridge`, `host`
//! and `none`) and its errors; endpoints (a container on a network), the
//! namespaces they live in (`netns`), published ports (`ports`) and the
//! netavark binary that sets them up (`netavark`). Rows live in the store
//! (`store/networks.rs`, `store/endpoints.rs`).

mod anchor;
pub mod bridge;
pub mod cidr;
mod endpoint;
mod error;
pub mod ipam;
mod model;
pub mod netavark;
pub mod netns;
pub mod ports;
mod service;
pub mod teardowns;

pub use anchor::{Anchor, NetworkRuntime, ANCHOR_PREFIX};
pub use endpoint::{Endpoint, EndpointConfig, EndpointIpamConfig, EndpointsConfig};
pub use error::NetworkError;
pub use model::{CreateNetwork, Ipam, NetworkDriver, NetworkRecord, PREDEFINED};
pub use service::{NetworkService, DEFAULT_BRIDGE, TEARDOWN_WAIT};
