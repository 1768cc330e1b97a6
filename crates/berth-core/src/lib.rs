//! berth-core: the engine of berth, with no HTTP and no command line.
//!
//! It owns the volume model and its rules ([`volume`]), the SQLite metadata
//! store ([`store`]), the volume drivers ([`driver`]) and the layout of the
//! daemon's root folder ([`root`]). Callers (the API layer, tests) drive it
//! through [`volume::VolumeService`]; every operation returns a typed
//! [`Error`] whose [`ErrorKind`] the API maps to a status code.

pub mod archive;
pub mod backup;
pub mod container;
pub mod driver;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod image;
pub mod locks;
pub mod network;
pub mod root;
pub mod store;
pub mod sys;
pub mod volume;

pub use error::{Error, ErrorKind, Result};
