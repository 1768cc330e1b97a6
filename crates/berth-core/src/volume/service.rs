//! The volume service: the one entry point for every volume operation.
//!
//! Ordering rule (crash safety): intent is recorded in the store before a
//! driver touches storage, and the row is finalised after. A crash between
//! the two leaves a `creating`/`removing` row that [`super::reconcile`]
//! settles at the next start. Locks are per name; none spans the service.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::filters::{self, Filters, NameFilter};
use super::names;
use super::trash::TrashWorker;
use super::usage::SizeCache;
use super::{CreateRequest, ListedVolume, Volume, VolumeError};
use crate::driver::{DriverRegistry, Retiring, VolumeDriver};
use crate::events::{Event, EventBus};
use crate::failpoint;
use crate::locks::NameLocks;
use crate::store::{Store, Tombstone, VolumeRecord, VolumeState};

/// Volume operations over one store and one set of drivers.
#[derive(Debug)]
pub struct VolumeService {
    pub(super) store: Arc<Store>,
    pub(super) drivers: DriverRegistry,
    pub(super) locks: NameLocks,
    pub(super) prune_running: AtomicBool,
    /// Findings of start-up reconciliation, shown as list warnings.
    pub(super) warnings: parking_lot::Mutex<Vec<String>>,
    pub(super) events: Arc<EventBus>,
    /// Sizes of volumes measured while nothing had them mounted.
    pub(super) sizes: SizeCache,
    /// Destroys removed volumes' storage off the request path.
    pub(super) trash: TrashWorker,
    /// Names whose removed volume's storage start-up left in place (it
    /// could neither move nor delete it): never given to a new volume.
    pub(super) buried: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl VolumeService {
    /// A service over `store` and `drivers`. Call [`VolumeService::reconcile`]
    /// once before serving requests.
    pub fn new(store: Arc<Store>, drivers: DriverRegistry) -> Self {
        let trash = TrashWorker::start(store.clone());
        VolumeService {
            store,
            drivers,
            locks: NameLocks::default(),
            prune_running: AtomicBool::new(false),
            warnings: parking_lot::Mutex::new(Vec::new()),
            events: Arc::new(EventBus::placeholder()),
            sizes: SizeCache::default(),
            trash,
            buried: Default::default(),
        }
    }

    /// Publishes this service's events on `bus` (shared with the others).
    pub fn with_events(mut self, bus: Arc<EventBus>) -> Self {
        self.events = bus;
        self
    }

    pub(super) fn publish(&self, action: &str, name: &str, attributes: &[(&str, &str)]) {
        self.events
            .publish(Event::now("volume", action, name, attributes));
    }

    /// Creates a volume, or returns the existing one of that name and driver.
    /// Returns the volume and whether it was created now.
    pub fn create(&self, req: CreateRequest) -> Result<(Volume, bool), VolumeError> {
        self.create_held(req, None)
    }

    /// Create (or reuse) and reference the volume for `holder` under one
    /// hold of the name's lock (Docker's `CreateWithRef`): a remove or a
    /// prune can never take the volume between the two.
    pub fn create_referenced(
        &self,
        req: CreateRequest,
        holder: &str,
    ) -> Result<(Volume, bool), VolumeError> {
        self.create_held(req, Some(holder))
    }

    fn create_held(
        &self,
        req: CreateRequest,
        holder: Option<&str>,
    ) -> Result<(Volume, bool), VolumeError> {
        let (name, labels) = match req.name.as_deref() {
            None | Some("") => names::anonymous_name_and_labels(req.labels),
            Some(name) => {
                names::validate_name(name)?;
                (name.to_string(), req.labels)
            }
        };
        let driver = self
            .drivers
            .get(&req.driver)
            .map_err(|e| VolumeError::driver("create", &name, e))?;
        driver
            .validate(&req.options)
            .map_err(|e| VolumeError::driver("create", &name, e))?;
        let _guard = self.locks.lock(&name);
        // A name in an unfinished rename (its row and storage may disagree,
        // or its storage is the renamed volume's) is refused until start-up.
        self.refuse_if_renaming("create", &name)?;
        let wanted = CreateRequest {
            name: Some(name.clone()),
            labels,
            ..req
        };
        let result = self.create_locked(wanted, driver.as_ref())?;
        if let Some(holder) = holder {
            self.store
                .add_ref(&name, holder)
                .map_err(|e| VolumeError::store("create", &name, e))?;
        }
        Ok(result)
    }

    /// The body of a create, under the name's lock (`req.name` is the
    /// final name, `req.labels` the final labels).
    fn create_locked(
        &self,
        req: CreateRequest,
        driver: &dyn VolumeDriver,
    ) -> Result<(Volume, bool), VolumeError> {
        let name = req.name.clone().unwrap_or_default();
        if let Some(existing) = self.record("create", &name)? {
            if existing.state == VolumeState::Ready {
                // No driver named (a container's `-v name:/dst`): any driver's
                // volume of that name is the one meant, as in Docker.
                let wanted = (!req.driver.is_empty()).then(|| driver.name());
                return self.reuse(existing, wanted, &req.options);
            }
            self.settle_unfinished(&existing)?;
        }
        let record = VolumeRecord {
            name,
            uid: VolumeRecord::new_uid(),
            driver: driver.name().to_string(),
            created_at: chrono::Utc::now().timestamp(),
            state: VolumeState::Creating,
            labels: req.labels,
            options: req.options,
        };
        self.create_storage(driver, record).map(|v| (v, true))
    }

    /// Second half of create: the row and the storage. A driver that can
    /// make its storage from the row gets the row ready in one durable
    /// commit, then its storage (a crash between the two leaves a ready
    /// row that start-up gives its storage); any other records `creating`,
    /// makes the storage, then records `ready`.
    fn create_storage(
        &self,
        driver: &dyn VolumeDriver,
        mut record: VolumeRecord,
    ) -> Result<Volume, VolumeError> {
        let name = record.name.clone();
        let store_err = |e| VolumeError::store("create", &name, e);
        self.settle_name("create", &name)?;
        let one_commit = driver.storage_from_row();
        if one_commit {
            // Ready in the database, hidden from readers until its storage
            // is made.
            record.state = VolumeState::Ready;
            self.store.insert_volume_hidden(&record)
        } else {
            self.store.insert_volume(&record)
        }
        .map_err(store_err)?;
        failpoint::hit("volume-create-committed");
        if let Err(e) = driver.create(&name, &record.options) {
            // Nothing was acknowledged: undo the row, keep the driver error.
            // If the undo fails, the row stays hidden; the next create of
            // the name makes its storage (see `reuse`), start-up too.
            if let Err(undo) = self.store.delete_volume(&name) {
                tracing::error!(volume = %name, error = %undo, "could not undo volume row");
            }
            return Err(VolumeError::driver("create", &name, e));
        }
        if one_commit {
            self.store.show_volume(&name);
        } else {
            self.store
                .set_volume_state(&name, VolumeState::Ready)
                .map_err(store_err)?;
            record.state = VolumeState::Ready;
        }
        tracing::info!(volume = %name, driver = %record.driver, "volume created");
        self.publish("create", &name, &[("driver", &record.driver)]);
        Ok(ListedVolume::of(driver, Arc::new(record)).into_volume())
    }

    /// Before `name` gets a row again, in any driver: refused if start-up
    /// left a removed volume's storage under it, and each trash's move of
    /// storage of that name made durable (a volume of another driver
    /// counts too: the removed storage must not come back beside it).
    pub(super) fn settle_name(&self, op: &'static str, name: &str) -> Result<(), VolumeError> {
        if self.buried.lock().contains(name) {
            return Err(VolumeError::RemovedStorageLeft {
                op,
                name: name.to_string(),
            });
        }
        for driver in self.drivers.all() {
            if let Some(trash) = driver.trash() {
                trash
                    .settle_name(name)
                    .map_err(|e| VolumeError::driver(op, name, e))?;
            }
        }
        Ok(())
    }

    /// Create of a name that exists: same driver reuses it (Docker), another
    /// driver or other non-empty options is a conflict (berth's choice, see
    /// ARCHITECTURE.md: Docker silently ignores differing options).
    fn reuse(
        &self,
        existing: VolumeRecord,
        driver: Option<&str>,
        options: &BTreeMap<String, String>,
    ) -> Result<(Volume, bool), VolumeError> {
        if driver.is_some_and(|d| d != existing.driver) {
            return Err(VolumeError::DriverConflict {
                name: existing.name,
                existing: existing.driver,
            });
        }
        if !options.is_empty() && *options != existing.options {
            return Err(VolumeError::OptionsConflict {
                name: existing.name,
                existing: format!("{:?}", existing.options),
                requested: format!("{options:?}"),
            });
        }
        let driver = self.driver_of("create", &existing)?;
        self.make_missing_storage(driver.as_ref(), &existing)?;
        Ok((self.to_volume(driver.as_ref(), existing, false)?, false))
    }

    /// A ready row of a driver that makes storage from the row, whose
    /// storage is missing (a create whose undo failed): made now, and the
    /// row shown to readers.
    fn make_missing_storage(
        &self,
        driver: &dyn VolumeDriver,
        record: &VolumeRecord,
    ) -> Result<(), VolumeError> {
        let name = record.name.as_str();
        let driver_err = |e| VolumeError::driver("create", name, e);
        if driver.storage_from_row() && driver.path(name).map_err(driver_err)?.is_none() {
            // Storage a failed remove left in the trash is this volume's:
            // put back, never replaced by an empty folder.
            let restored = driver
                .trash()
                .is_some_and(|t| t.restore(&record.uid, name).is_ok());
            if !restored {
                driver.create(name, &record.options).map_err(driver_err)?;
                tracing::warn!(volume = %name, "made the missing storage of an existing volume");
            }
        }
        self.store.show_volume(name);
        Ok(())
    }

    /// One volume, with its driver status.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        let record = self
            .ready_record(name)
            .ok_or_else(|| VolumeError::not_found("get", name))?;
        let driver = self.driver_of("get", &record)?;
        let volume = self.to_volume(driver.as_ref(), record, true)?;
        if volume.mountpoint.as_os_str().is_empty() && self.ready_record(name).is_none() {
            // Removed while it was looked at: a remove hides the row, then
            // moves the folder away; the row seen before is gone.
            return Err(VolumeError::not_found("get", name));
        }
        Ok(volume)
    }

    /// Volumes matching `filters` (keys: dangling, driver, label, name),
    /// ordered by name.
    pub fn list(&self, filters: &Filters) -> Result<Vec<Volume>, VolumeError> {
        Ok(self
            .list_shared(filters)?
            .into_iter()
            .map(ListedVolume::into_volume)
            .collect())
    }

    /// [`VolumeService::list`] without copying the rows: served from the
    /// store's in-memory rows, at most one query (the use counts, for
    /// `dangling`) and no disk access.
    pub fn list_shared(&self, filters: &Filters) -> Result<Vec<ListedVolume>, VolumeError> {
        filters::check_keys(filters, filters::LIST_KEYS)?;
        let dangling = filters::dangling_value(filters)?;
        let names = NameFilter::new(filters)?;
        let in_use = match dangling {
            Some(_) => self
                .store
                .use_counts()
                .map_err(|e| VolumeError::store("list", "volumes", e))?,
            None => Default::default(),
        };
        let mut out = Vec::new();
        // Drivers looked up once each, not once per volume.
        let mut driver: Option<Arc<dyn VolumeDriver>> = None;
        for record in self.store.volumes() {
            let keep = record.state == VolumeState::Ready
                && names.matches(&record.name)
                && filters::exact_match(filters, "driver", &record.driver)
                && filters::labels_match(filters, "label", &record.labels)
                && dangling.is_none_or(|d| d != in_use.contains_key(&record.name));
            if !keep {
                continue;
            }
            let current = match driver.take() {
                Some(d) if d.name() == record.driver => Some(d),
                // Never a plugin call: an inactive or gone plugin's
                // volumes are listed from their rows.
                _ => self.drivers.ready(&record.driver),
            };
            out.push(match &current {
                Some(d) => ListedVolume::of(d.as_ref(), record),
                None => ListedVolume::unreachable(record),
            });
            driver = current;
        }
        Ok(out)
    }

    /// Warnings for list responses (start-up reconciliation findings).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().clone()
    }

    /// The volume plugins, if the daemon looks them up.
    pub fn plugins(&self) -> Option<&Arc<crate::driver::plugin::Plugins>> {
        self.drivers.plugins()
    }

    /// Removes a volume. Held volumes are refused even with `force`; `force`
    /// turns "no such volume" into `Ok(false)` and drops the metadata even if
    /// the driver fails to delete the storage (the error is still returned,
    /// as Docker's purge-on-error does).
    pub fn remove(&self, name: &str, force: bool) -> Result<bool, VolumeError> {
        let _guard = self.locks.lock(name);
        match self.record("remove", name)? {
            Some(record) if record.state != VolumeState::Creating => {
                self.remove_locked(&record, force)
            }
            _ if force => Ok(false),
            _ => Err(VolumeError::not_found("get", name)),
        }
    }

    /// Remove with the name lock held: check holders, then move the storage
    /// to the driver's trash and commit once, or remove it in place.
    pub(super) fn remove_locked(
        &self,
        record: &VolumeRecord,
        force: bool,
    ) -> Result<bool, VolumeError> {
        let name = record.name.as_str();
        // Removing the row would drop the rename journal with it (cascade)
        // while the data may sit under the other name.
        self.refuse_if_renaming("remove", name)?;
        let holders = self.holders(name)?;
        if !holders.is_empty() {
            return Err(VolumeError::InUse {
                op: "remove",
                name: name.to_string(),
                holders,
            });
        }
        let driver = self.driver_of("remove", record)?;
        if let Some(trash) = driver.trash() {
            // Readers do not see the volume while its folder is away.
            self.store.hide_volume(name);
            let moved = trash
                .retire(&[Retiring {
                    name,
                    uid: &record.uid,
                }])
                .pop();
            match moved.unwrap_or(Ok(false)) {
                Ok(_) => return self.commit_retired(record, driver.clone()),
                // Not movable (a mount point of its own): removed in place.
                Err(e) => tracing::debug!(volume = %name, error = %e, "removing in place"),
            }
            self.store.show_volume(name);
        }
        self.remove_in_place(record, driver.as_ref(), force)
    }

    /// A remove whose storage is in the trash: one durable commit deletes
    /// the row and leaves its tombstone, then the storage is destroyed in
    /// the background. If the delete fails, the storage is put back and
    /// nothing changed.
    fn commit_retired(
        &self,
        record: &VolumeRecord,
        driver: Arc<dyn VolumeDriver>,
    ) -> Result<bool, VolumeError> {
        let name = record.name.as_str();
        failpoint::hit("volume-remove-retired");
        if let Err(e) = self.store.delete_retired(&[tombstone_of(record)]) {
            self.put_back(driver.as_ref(), record);
            return Err(VolumeError::store("remove", name, e));
        }
        failpoint::hit("volume-remove-committed");
        self.trash.destroy_later(driver, record.uid.clone());
        self.removed(record);
        Ok(true)
    }

    /// Undoes a move to the trash whose commit failed: the storage back
    /// under its name, the row shown again.
    pub(super) fn put_back(&self, driver: &dyn VolumeDriver, record: &VolumeRecord) {
        let name = record.name.as_str();
        match driver.trash().map(|t| t.restore(&record.uid, name)) {
            Some(Err(e)) => {
                // Start-up puts it back (the row has the entry's uid).
                tracing::error!(volume = %name, error = %e, "could not put a volume back after a failed remove");
            }
            _ => self.store.show_volume(name),
        }
    }

    /// Remove for drivers without a trash (and storage that cannot be
    /// moved): mark `removing`, delete the storage, delete the row.
    pub(super) fn remove_in_place(
        &self,
        record: &VolumeRecord,
        driver: &dyn VolumeDriver,
        force: bool,
    ) -> Result<bool, VolumeError> {
        let name = record.name.as_str();
        let store_err = |e| VolumeError::store("remove", name, e);
        self.store
            .set_volume_state(name, VolumeState::Removing)
            .map_err(store_err)?;
        if let Err(e) = driver.remove(name) {
            if !force {
                self.store
                    .set_volume_state(name, VolumeState::Ready)
                    .map_err(store_err)?;
                return Err(VolumeError::driver("remove", name, e));
            }
            // Docker's PurgeOnError: forget the volume, still report the error.
            tracing::warn!(volume = %name, error = %e, "driver failed to remove storage; metadata purged (force)");
            self.store.purge_volume(name).map_err(store_err)?;
            return Err(VolumeError::driver("remove", name, e));
        }
        self.store.delete_volume(name).map_err(store_err)?;
        self.removed(record);
        Ok(true)
    }

    /// What follows every remove that committed.
    pub(super) fn removed(&self, record: &VolumeRecord) {
        tracing::info!(volume = %record.name, "volume removed");
        self.removed_quietly(record);
    }

    /// [`VolumeService::removed`] without its log line (a prune logs one
    /// line for all its volumes, not 100,000).
    pub(super) fn removed_quietly(&self, record: &VolumeRecord) {
        self.sizes.forget(&record.name);
        self.publish("destroy", &record.name, &[("driver", &record.driver)]);
    }

    /// The driver of a create of `name` under way (its row is `creating`),
    /// read without waiting for the name's lock.
    pub fn being_created(&self, name: &str) -> Option<String> {
        let row = self.store.get_volume(name).ok().flatten()?;
        (row.state == VolumeState::Creating).then_some(row.driver)
    }

    /// Whether [`VolumeService::get`] of `name` is quick enough for an
    /// async worker (its driver's `get` is: see `get_is_quick`).
    pub fn get_is_quick(&self, name: &str) -> bool {
        let Some(driver) = self.store.visible_driver(name) else {
            return true; // "no such volume", from memory
        };
        (self.drivers.builtin(&driver)).is_some_and(|d| d.get_is_quick())
    }

    /// Whether `driver` is one of berth's own (not a plugin's).
    pub fn is_builtin_driver(&self, driver: &str) -> bool {
        self.drivers.builtin(driver).is_some()
    }

    /// The active mount ids of `name` (running containers' IDs, and
    /// berth's own operations'), sorted.
    pub fn mount_ids(&self, name: &str) -> Result<Vec<String>, VolumeError> {
        let mut ids = (self.store.mounts(name)).map_err(|e| VolumeError::store("get", name, e))?;
        ids.sort();
        Ok(ids)
    }

    /// Containers holding `name` and its active mount ids, sorted.
    pub fn holders(&self, name: &str) -> Result<Vec<String>, VolumeError> {
        let store_err = |e| VolumeError::store("get", name, e);
        let mut holders = self.store.refs(name).map_err(store_err)?;
        for id in self.store.mounts(name).map_err(store_err)? {
            if !holders.contains(&id) {
                holders.push(id);
            }
        }
        holders.sort();
        Ok(holders)
    }

    /// Every stored holder of any volume: references and mount ids, as
    /// (volume, holder, is a mount id).
    pub fn all_holders(&self) -> Result<Vec<(String, String, bool)>, VolumeError> {
        let store_err = |e| VolumeError::store("list", "", e);
        let mut out: Vec<(String, String, bool)> = self
            .store
            .all_refs()
            .map_err(store_err)?
            .into_iter()
            .map(|(v, h)| (v, h, false))
            .collect();
        let mounts = self.store.all_mounts().map_err(store_err)?;
        out.extend(mounts.into_iter().map(|(v, id)| (v, id, true)));
        Ok(out)
    }

    /// Records that `holder` (a container) uses the volume; persisted, so
    /// "in use" survives restarts. Returns whether the reference is new.
    pub fn add_ref(&self, name: &str, holder: &str) -> Result<bool, VolumeError> {
        let _guard = self.locks.lock(name);
        self.ready_record(name)
            .ok_or_else(|| VolumeError::not_found("get", name))?;
        self.refuse_if_renaming("get", name)?;
        self.store
            .add_ref(name, holder)
            .map_err(|e| VolumeError::store("get", name, e))
    }

    /// Drops `holder`'s reference. Returns whether one existed.
    pub fn remove_ref(&self, name: &str, holder: &str) -> Result<bool, VolumeError> {
        let _guard = self.locks.lock(name);
        self.store
            .remove_ref(name, holder)
            .map_err(|e| VolumeError::store("release", name, e))
    }

    /// Mounts the volume for `id` (the driver mounts at the first id) and
    /// persists the id. Returns the path to use. Mount and unmount events
    /// name `id` as the container; berth's own operations' ids
    /// ([`super::OPERATION_MOUNT_PREFIX`]) are no container, so theirs are
    /// not published.
    pub fn mount(&self, name: &str, id: &str) -> Result<PathBuf, VolumeError> {
        let _guard = self.locks.lock(name);
        let record = self
            .ready_record(name)
            .ok_or_else(|| VolumeError::not_found("mount", name))?;
        self.refuse_if_renaming("mount", name)?;
        let driver = self.driver_of("mount", &record)?;
        // Whatever it measured may change from now on.
        self.sizes.forget(name);
        let path = driver
            .mount(name, &record.options, id)
            .map_err(|e| VolumeError::driver("mount", name, e))?;
        match self.store.add_mount(name, id) {
            Ok(true) if is_operation_id(id) => {}
            Ok(true) => self.publish(
                "mount",
                name,
                &[("container", id), ("driver", &record.driver)],
            ),
            Ok(false) => {}
            Err(e) => {
                // Keep driver and store in step: undo the driver-side mount.
                let _ = driver.unmount(name, id);
                return Err(VolumeError::store("mount", name, e));
            }
        }
        Ok(path)
    }

    /// Releases `id`'s mount (the driver unmounts at the last id). Returns
    /// whether `id` was mounted.
    pub fn unmount(&self, name: &str, id: &str) -> Result<bool, VolumeError> {
        let _guard = self.locks.lock(name);
        let Some(record) = self.ready_record(name) else {
            return Ok(false);
        };
        let driver = self.driver_of("unmount", &record)?;
        let unmounted =
            (driver.unmount(name, id)).map_err(|e| VolumeError::driver("unmount", name, e));
        // berth's own drivers keep the id of a failed unmount (start-up
        // settles it); a plugin keeps its own mount state, so its id goes
        // anyway, as Docker drops the reference: a plugin that refuses an
        // Unmount must not keep the volume "in use" by a removed container.
        if unmounted.is_err() && self.drivers.builtin(&record.driver).is_some() {
            return unmounted.map(|_| false);
        }
        self.sizes.forget(name);
        let removed = self
            .store
            .remove_mount(name, id)
            .map_err(|e| VolumeError::store("unmount", name, e))?;
        unmounted?;
        if removed && !is_operation_id(id) {
            self.publish(
                "unmount",
                name,
                &[("container", id), ("driver", &record.driver)],
            );
        }
        Ok(removed)
    }

    /// Whether the volume still awaits its one copy-up of image content.
    pub fn copy_up_pending(&self, name: &str) -> Result<bool, VolumeError> {
        self.store
            .is_populated(name)
            .map(|done| !done)
            .map_err(|e| VolumeError::store("get", name, e))
    }

    /// Records that the volume's copy-up is decided (done, or nothing to copy).
    pub fn mark_populated(&self, name: &str) -> Result<bool, VolumeError> {
        self.store
            .mark_populated(name)
            .map_err(|e| VolumeError::store("get", name, e))
    }

    pub(super) fn record(
        &self,
        op: &'static str,
        name: &str,
    ) -> Result<Option<VolumeRecord>, VolumeError> {
        self.store
            .get_volume(name)
            .map_err(|e| VolumeError::store(op, name, e))
    }

    /// The row if it is ready and not hidden; rows mid-create or
    /// mid-remove do not exist for readers.
    fn ready_record(&self, name: &str) -> Option<VolumeRecord> {
        (self.store.visible_volume(name)).filter(|r| r.state == VolumeState::Ready)
    }

    pub(super) fn driver_of(
        &self,
        op: &'static str,
        record: &VolumeRecord,
    ) -> Result<Arc<dyn VolumeDriver>, VolumeError> {
        self.drivers
            .get(&record.driver)
            .map_err(|e| VolumeError::driver(op, &record.name, e))
    }

    pub(super) fn to_volume(
        &self,
        driver: &dyn VolumeDriver,
        record: VolumeRecord,
        with_status: bool,
    ) -> Result<Volume, VolumeError> {
        let driver_err = |e| VolumeError::driver("get", &record.name, e);
        let (mountpoint, status) = if with_status {
            let dv = driver.get(&record.name).map_err(driver_err)?;
            let mountpoint = dv.as_ref().map(|d| d.mountpoint.clone());
            (mountpoint, dv.and_then(|d| d.status))
        } else {
            (driver.path(&record.name).map_err(driver_err)?, None)
        };
        Ok(Volume {
            mountpoint: mountpoint.unwrap_or_default(),
            scope: driver.capabilities().scope,
            name: record.name,
            driver: record.driver,
            created_at: record.created_at,
            labels: record.labels,
            options: record.options,
            status,
        })
    }
}

impl ListedVolume {
    /// `record` as `driver` shows it in a list: the mountpoint it names
    /// without touching storage, no status (Docker's list shows none).
    fn of(driver: &dyn VolumeDriver, record: Arc<VolumeRecord>) -> Self {
        ListedVolume {
            mountpoint: driver.mountpoint(&record.name).unwrap_or_default(),
            scope: driver.capabilities().scope,
            record,
        }
    }

    /// `record` of a driver not at hand (a plugin not activated, or
    /// gone): its row, with no mountpoint.
    fn unreachable(record: Arc<VolumeRecord>) -> Self {
        ListedVolume {
            mountpoint: Default::default(),
            scope: crate::driver::Scope::Local,
            record,
        }
    }

    /// The volume as an owned value (its row copied).
    pub fn into_volume(self) -> Volume {
        let record = Arc::unwrap_or_clone(self.record);
        Volume {
            mountpoint: self.mountpoint,
            scope: self.scope,
            name: record.name,
            driver: record.driver,
            created_at: record.created_at,
            labels: record.labels,
            options: record.options,
            status: None,
        }
    }
}

/// Whether a mount id is one of berth's own operations (export, import),
/// not a container.
fn is_operation_id(id: &str) -> bool {
    id.starts_with(super::OPERATION_MOUNT_PREFIX)
}

/// The tombstone a remove of `record` through the trash leaves.
pub(super) fn tombstone_of(record: &VolumeRecord) -> Tombstone {
    Tombstone {
        uid: record.uid.clone(),
        name: record.name.clone(),
        driver: record.driver.clone(),
    }
}
