//! Import into a volume made for it: `volume import --create` of a name
//! that does not exist, and the receiving end of `volume migrate`.
//!
//! All or nothing without a staging folder: the volume is a `creating` row
//! (as a clone is) from before its storage exists until its content is
//! whole and synced, and only then `ready`. No one else can see, mount or
//! fill it meanwhile (the name lock is held throughout and verbs take
//! ready rows only); a failure removes the storage and the row; a crash
//! leaves a `creating` row that start-up rolls back like any half-made
//! create. So the name is either free or holds the whole import.

use std::path::Path;

use super::{names, CreateRequest, Volume, VolumeError, VolumeService};
use crate::driver::VolumeDriver;
use crate::store::{VolumeRecord, VolumeState};

impl VolumeService {
    /// Makes volume `request.name` (refused when the name is taken) with the
    /// request's driver, options and labels, has `fill` write its content
    /// into the mounted, empty volume root, syncs it, and marks it ready.
    /// See the module documentation for the guarantees.
    pub fn import_new(
        &self,
        request: CreateRequest,
        fill: impl FnOnce(&Path) -> Result<(), VolumeError>,
    ) -> Result<Volume, VolumeError> {
        self.make_filled(request, |record, driver| fill_new(record, driver, fill))
    }

    /// [`VolumeService::import_new`] with the storage made and filled by
    /// `make` (given the new row and its driver; on failure the storage
    /// and the row are removed).
    pub(super) fn make_filled(
        &self,
        request: CreateRequest,
        make: impl FnOnce(&VolumeRecord, &dyn VolumeDriver) -> Result<(), VolumeError>,
    ) -> Result<Volume, VolumeError> {
        let name = import_name(&request)?;
        let driver = self
            .drivers
            .get(&request.driver)
            .map_err(|e| VolumeError::driver("import", &name, e))?;
        driver
            .validate(&request.options)
            .map_err(|e| VolumeError::driver("import", &name, e))?;
        let guard = self.locks.lock(&name);
        let record = self.new_import_record(request, &name, driver.as_ref())?;
        self.store
            .insert_volume(&record)
            .map_err(|e| VolumeError::store("import", &name, e))?;
        if let Err(e) = make(&record, driver.as_ref()) {
            // Nothing was acknowledged: the storage and the row go.
            if let Err(rm) = driver.remove(&name) {
                tracing::error!(volume = %name, error = %rm, "removing a failed import's storage");
            }
            if let Err(rm) = self.store.delete_volume(&name) {
                tracing::error!(volume = %name, error = %rm, "removing a failed import's row");
            }
            return Err(e);
        }
        self.store
            .set_volume_state(&name, VolumeState::Ready)
            .map_err(|e| VolumeError::store("import", &name, e))?;
        tracing::info!(volume = %name, driver = %record.driver, "volume created by an import");
        self.publish("create", &name, &[("driver", &record.driver)]);
        self.publish("import", &name, &[]);
        drop(guard);
        self.get(&name)
    }

    /// The `creating` row of a new import, once the name is known free: no
    /// volume, no unfinished rename, no storage the driver already has.
    fn new_import_record(
        &self,
        request: CreateRequest,
        name: &str,
        driver: &dyn VolumeDriver,
    ) -> Result<VolumeRecord, VolumeError> {
        self.refuse_if_renaming("import", name)?;
        self.settle_name("import", name)?;
        let taken = || VolumeError::NameTaken {
            op: "import",
            name: name.to_string(),
        };
        if self.record("import", name)?.is_some() {
            return Err(taken());
        }
        let storage = driver
            .path(name)
            .map_err(|e| VolumeError::driver("import", name, e))?;
        if storage.is_some() {
            return Err(VolumeError::StorageExists {
                op: "import",
                name: name.to_string(),
            });
        }
        let record = VolumeRecord {
            name: name.to_string(),
            uid: VolumeRecord::new_uid(),
            driver: driver.name().to_string(),
            created_at: chrono::Utc::now().timestamp(),
            state: VolumeState::Creating,
            labels: request.labels,
            options: request.options,
        };
        super::import::refuse_tmpfs(&record)?;
        refuse_mounted_from(&record)?;
        Ok(record)
    }
}

/// A local volume with mount options keeps its data on a device or share
/// that holds files already: filling it in place could not be undone, so
/// it is made with `volume create` and imported into (staged) instead.
fn refuse_mounted_from(record: &VolumeRecord) -> Result<(), VolumeError> {
    if !crate::driver::data_outside_berth(&record.driver, &record.options) {
        return Ok(());
    }
    let why = "import --create cannot make a local volume with mount options (type, device, o): \
               its data lives on a device or share an unfinished import could not undo; \
               create the volume first, then import into it";
    Err(VolumeError::driver(
        "import",
        &record.name,
        crate::driver::DriverError::Unsupported(why.into()),
    ))
}

/// The volume name an import must be given (imports are never anonymous).
pub(super) fn import_name(request: &CreateRequest) -> Result<String, VolumeError> {
    match request.name.as_deref() {
        Some(n) if !n.is_empty() => {
            names::validate_name(n)?;
            Ok(n.to_string())
        }
        _ => Err(VolumeError::InvalidName(
            "import needs a volume name".into(),
        )),
    }
}

/// Makes the storage, mounts it under an operation id, fills and syncs
/// it, and unmounts it. The caller removes the storage on failure.
fn fill_new(
    record: &VolumeRecord,
    driver: &dyn VolumeDriver,
    fill: impl FnOnce(&Path) -> Result<(), VolumeError>,
) -> Result<(), VolumeError> {
    let name = record.name.as_str();
    let driver_err = |e| VolumeError::driver("import", name, e);
    driver.create(name, &record.options).map_err(driver_err)?;
    let id = super::operation_mount_id("import-new");
    let root = driver
        .mount(name, &record.options, &id)
        .map_err(driver_err)?;
    let filled = fill(&root).and_then(|()| {
        crate::sys::sync_filesystem(&root)
            .map_err(|e| driver_err(crate::driver::DriverError::io("syncing the import", e)))
    });
    let unmounted = driver.unmount(name, &id).map_err(driver_err);
    filled.and(unmounted.map(|_| ()))
}
