//! Thin wrappers over Linux facilities: mounts and the mount table,
//! on-disk usage of a folder, and symlink-safe paths inside a root.

pub mod copy;
pub mod inroot;
pub mod loopdev;
pub mod mount;
pub mod reflink;
pub mod remove_tree;
pub mod units;
pub mod usage;
