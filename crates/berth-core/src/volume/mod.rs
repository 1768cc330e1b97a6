//! Volumes: the model, the name rules, filters, and the service that ties
//! the metadata store to the drivers.
//!
//! Split as moby's `daemon/volume/service`: [`names`] (what a name may be
//! and what "anonymous" means), [`filters`] (list/prune filter semantics),
//! [`service`] (create, get, list, remove, refs, mounts), [`prune`],
//! [`reconcile`] (start-up repair), [`trash`] (removed storage destroyed in
//! the background), [`usage`] (`system df` sizes, measured once while
//! unmounted), [`plugin_client`] (mounts another engine holds through
//! berth's volume plugin), [`plugin_list`] (what `volume ls` asks plugins), [`plugin_settle`]
//! (plugin volumes a crash cut short); per-name locking is [`crate::locks`].

mod archive;
mod backup_source;
mod blocks;
mod error;
mod extended;
pub mod filters;
mod import;
mod import_new;
mod model;
pub mod names;
mod plugin_client;
mod plugin_list;
mod plugin_settle;
mod prune;
mod reconcile;
mod rename;
mod service;
mod trash;
mod usage;

pub use archive::{operation_mount_id, OPERATION_MOUNT_PREFIX};
pub use backup_source::{BackupSource, Consistency, BACKUP_SNAPSHOT_PREFIX};
pub use blocks::{ReceiveRequest, MIGRATE_PREFIX};
pub use error::VolumeError;
pub use extended::CloneProgress;
pub use filters::Filters;
pub use import::AnnouncedDigest;
pub use model::{CreateRequest, ListedVolume, Volume, VolumeUsage};
pub use plugin_client::{is_plugin_client_id, plugin_client_mount_id, PLUGIN_CLIENT_MOUNT_PREFIX};
pub use plugin_list::{PluginListing, PLUGIN_LIST_WAIT};
pub use prune::PruneReport;
pub use reconcile::ReconcileReport;
pub use service::VolumeService;
