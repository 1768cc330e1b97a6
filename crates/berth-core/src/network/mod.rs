//! Networks: the model, address management (`ipam`, `cidr`), the service
//! (create, list, look-up, remove, prune, the predefined `bridge`, `host`
//! and `none`) and its errors. Rows live in the store (`store/networks.rs`).
//! Containers join networks through netavark in a later step; this module
//! owns the state netavark will be given (subnets, gateways).

pub mod cidr;
mod error;
pub mod ipam;
mod model;
mod service;

pub use error::NetworkError;
pub use model::{CreateNetwork, Ipam, NetworkDriver, NetworkRecord, PREDEFINED};
pub use service::{NetworkService, DEFAULT_BRIDGE};
