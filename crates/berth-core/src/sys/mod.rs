//! Thin wrappers over Linux facilities the drivers need: mounts and the
//! mount table, and on-disk usage of a folder.

pub mod mount;
pub mod usage;
