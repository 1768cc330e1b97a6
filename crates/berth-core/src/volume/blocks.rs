//! Block-level copies of thin volumes between daemons (`volume migrate`):
//! the sending side reads what a snapshot changed since an older one
//! ([`VolumeService::snapshot_blocks`]); the receiving side applies such a
//! stream to a staged copy of its own snapshot of that older one, or of
//! nothing for a first copy ([`VolumeService::receive_blocks`]).
//!
//! All or nothing, as import: the stream is applied to a staged image that
//! replaces the volume's only once the stream was whole (its end record
//! read, its digest matching when one was announced) and synced; a new
//! volume is a `creating` row until then (see `import_new.rs`). The
//! received snapshot is kept on the receiving side as the base of the next
//! copy, which is refused if the volume changed since (its writes would be
//! lost; `discard_changes` says to lose them) or is mounted. The staged
//! image is a clone of that snapshot, not of the volume: with the
//! difference applied it is the sender's snapshot exactly.

use std::io::Read;

use super::{names, CreateRequest, VolumeError, VolumeService};
use crate::archive::block_stream::{apply_records, expect_end, read_header, Applied};
use crate::archive::digest::{check_digest, HashingReader};
use crate::driver::{BlockSource, DriverError, ExtendedDriver, VolumeDriver};
use crate::store::VolumeRecord;

use super::extended::extended_of;
use super::import::{archive_error, AnnouncedDigest};

/// Name prefix of the snapshots `volume migrate` keeps as bases.
pub const MIGRATE_PREFIX: &str = "migrate-";

/// A block stream to receive into volume `name`.
pub struct ReceiveRequest {
    pub name: String,
    /// The snapshot of the sender the stream brings: kept here as the
    /// base of the next copy.
    pub snapshot: String,
    /// The snapshot both sides have that the stream is a difference
    /// from (none: the stream is the whole volume).
    pub base: Option<String>,
    /// Make the volume (it must not exist): driver, options, labels.
    pub create: Option<CreateRequest>,
    /// Replace a volume that changed since `base` anyway (its changes
    /// since are lost; the result is the sender's snapshot exactly).
    pub discard_changes: bool,
}

impl VolumeService {
    /// The changes of snapshot `snap` of `name` since its snapshot `since`
    /// (all its data without one), opened for reading: the caller writes
    /// them as a block stream. Counts as an export of the volume.
    pub fn snapshot_blocks(
        &self,
        name: &str,
        snap: &str,
        since: Option<&str>,
    ) -> Result<BlockSource, VolumeError> {
        names::validate_snapshot_name(snap)?;
        if let Some(base) = since {
            names::validate_snapshot_name(base)?;
        }
        let _guard = self.locks.lock(name);
        let record = self.ready("export", name)?;
        let driver = self.driver_of("export", &record)?;
        let source = extended_of("block copies", driver.as_ref(), name)?
            .block_source(name, snap, since)
            .map_err(|e| VolumeError::driver("export", name, e))?;
        self.publish("export", name, &[("snapshot", snap)]);
        Ok(source)
    }

    /// Applies block stream `input` (plain or compressed) to volume
    /// `request.name` as the module documentation says. Returns what the
    /// stream held.
    pub fn receive_blocks(
        &self,
        request: ReceiveRequest,
        input: impl Read,
        announced: Option<AnnouncedDigest>,
    ) -> Result<Applied, VolumeError> {
        names::validate_snapshot_name(&request.snapshot)?;
        if let Some(base) = &request.base {
            names::validate_snapshot_name(base)?;
        }
        let name = request.name.clone();
        let mut applied = Applied::default();
        match request.create {
            Some(create) => {
                if request.base.is_some() {
                    let why = "a new volume has no base snapshot: give create or base, not both";
                    return Err(VolumeError::driver(
                        "import",
                        &name,
                        DriverError::InvalidOption(why.into()),
                    ));
                }
                let snap = request.snapshot.as_str();
                let fill = |record: &VolumeRecord, driver: &dyn VolumeDriver| {
                    let ext = extended_of("block copies", driver, &record.name)?;
                    driver
                        .create(&record.name, &record.options)
                        .map_err(|e| VolumeError::driver("import", &record.name, e))?;
                    applied = receive_into(ext, &record.name, None, snap, input, announced)?;
                    Ok(())
                };
                self.make_filled(create, fill)?;
            }
            None => {
                applied = self.receive_into_existing(&request, input, announced)?;
            }
        }
        tracing::info!(volume = %name, data = applied.data, zeroed = applied.zeroed, "received a block stream");
        Ok(applied)
    }

    fn receive_into_existing(
        &self,
        request: &ReceiveRequest,
        input: impl Read,
        announced: Option<AnnouncedDigest>,
    ) -> Result<Applied, VolumeError> {
        let name = request.name.as_str();
        let _guard = self.locks.lock(name);
        let record = self.ready("import", name)?;
        self.refuse_if_mounted("import", name)?;
        let driver = self.driver_of("import", &record)?;
        let ext = extended_of("block copies", driver.as_ref(), name)?;
        let snapshots = ext
            .snapshot_list(name)
            .map_err(|e| VolumeError::driver("import", name, e))?;
        if snapshots.iter().any(|s| s.name == request.snapshot) {
            let why = format!("volume {name} already has a snapshot {}", request.snapshot);
            return Err(VolumeError::driver(
                "import",
                name,
                DriverError::InvalidOption(why),
            ));
        }
        match request.base.as_deref() {
            Some(base) if !snapshots.iter().any(|s| s.name == base) => {
                return Err(VolumeError::not_found("import", &format!("{name}/{base}")));
            }
            Some(base) if !request.discard_changes => {
                refuse_if_changed(ext, name, base, &snapshots)?;
            }
            // A whole stream replaces an existing volume only when asked.
            None if !request.discard_changes => {
                return Err(VolumeError::NameTaken {
                    op: "import",
                    name: name.to_string(),
                })
            }
            _ => {}
        }
        let base = request.base.as_deref();
        let applied = receive_into(ext, name, base, &request.snapshot, input, announced)?;
        self.publish("import", name, &[("snapshot", &request.snapshot)]);
        Ok(applied)
    }
}

/// Refuses when the volume holds writes no copy brought: its content is
/// neither that of `base` nor that of another `migrate-*` snapshot (one an
/// interrupted copy installed, whose answer never reached the sender:
/// replacing that loses nothing the sender does not have).
fn refuse_if_changed(
    ext: &dyn ExtendedDriver,
    name: &str,
    base: &str,
    snapshots: &[crate::driver::SnapshotInfo],
) -> Result<(), VolumeError> {
    let candidates = std::iter::once(base).chain(
        (snapshots.iter())
            .map(|s| s.name.as_str())
            .filter(|s| *s != base && s.starts_with(MIGRATE_PREFIX)),
    );
    for snap in candidates {
        let changed = ext
            .changed_since(name, snap)
            .map_err(|e| VolumeError::driver("import", name, e))?;
        if !changed {
            return Ok(());
        }
    }
    Err(VolumeError::ChangedSince {
        name: name.to_string(),
        snapshot: base.to_string(),
    })
}

/// Stages `name`'s image (from `base`, or empty), applies the stream to
/// it, checks it whole, and installs it with snapshot `snap`.
fn receive_into(
    ext: &dyn ExtendedDriver,
    name: &str,
    base: Option<&str>,
    snap: &str,
    input: impl Read,
    announced: Option<AnnouncedDigest>,
) -> Result<Applied, VolumeError> {
    let failed = |e| archive_error(name, e);
    let staged = ext
        .stage_blocks(name, base)
        .map_err(|e| VolumeError::driver("import", name, e))?;
    let reader = crate::archive::decompress(input).map_err(failed)?;
    let mut hashing = HashingReader::new(reader);
    read_header(&mut hashing, staged.size()).map_err(failed)?;
    let applied = apply_records(&mut hashing, staged.file(), staged.size()).map_err(failed)?;
    expect_end(&mut hashing).map_err(failed)?;
    let received = hashing.digest();
    if let Some(announced) = announced {
        check_digest(announced().as_deref(), &received).map_err(failed)?;
    }
    ext.install_blocks(name, staged, snap)
        .map_err(|e| VolumeError::driver("import", name, e))?;
    Ok(applied)
}
