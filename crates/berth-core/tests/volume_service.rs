//! The volume service over a real root: a real SQLite file, real folders,
//! real tmpfs mounts. Each test has its own temporary root.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_core::driver::local::LocalDriver;
use berth_core::driver::{DriverError, DriverOptions, DriverRegistry, DriverVolume, VolumeDriver};
use berth_core::root::RootLayout;
use berth_core::store::Store;
use berth_core::sys::mount::is_mounted;
use berth_core::volume::{CreateRequest, Filters, VolumeService};
use berth_core::ErrorKind;

struct Fixture {
    dir: tempfile::TempDir,
    svc: VolumeService,
}

fn service_at(root: &Path) -> VolumeService {
    let layout = RootLayout::create(root).unwrap();
    let store = Arc::new(Store::open(&layout.db_path()).unwrap());
    let mut drivers = DriverRegistry::default();
    drivers.register(Arc::new(LocalDriver::new(&layout.volumes_dir())));
    VolumeService::new(store, drivers)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let svc = service_at(dir.path());
    svc.reconcile().unwrap();
    Fixture { dir, svc }
}

fn named(name: &str) -> CreateRequest {
    CreateRequest {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn with_labels(name: &str, labels: &[(&str, &str)]) -> CreateRequest {
    CreateRequest {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..named(name)
    }
}

fn filters(pairs: &[(&str, &str)]) -> Filters {
    let mut f = Filters::new();
    for (k, v) in pairs {
        f.entry(k.to_string()).or_default().push(v.to_string());
    }
    f
}

fn names(svc: &VolumeService, f: &Filters) -> Vec<String> {
    svc.list(f).unwrap().into_iter().map(|v| v.name).collect()
}

#[test]
fn create_is_idempotent_and_driver_conflict_is_409() {
    let fx = fixture();
    let (v, created) = fx.svc.create(with_labels("data", &[("a", "1")])).unwrap();
    assert!(created);
    assert_eq!(v.mountpoint, fx.dir.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    let (again, created) = fx.svc.create(named("data")).unwrap();
    assert!(!created);
    assert_eq!(again, v);
    let other = CreateRequest {
        driver: "nosuch".into(),
        ..named("data")
    };
    assert_eq!(
        fx.svc.create(other).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let opts = CreateRequest {
        options: [
            ("type".into(), "tmpfs".into()),
            ("device".into(), "tmpfs".into()),
        ]
        .into(),
        ..named("data")
    };
    assert_eq!(fx.svc.create(opts).unwrap_err().kind(), ErrorKind::Conflict);
}

#[test]
fn bad_input_changes_nothing() {
    let fx = fixture();
    let too_long = "x".repeat(300);
    for bad in ["a", "a/b", "..", "a b", too_long.as_str()] {
        let err = fx.svc.create(named(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}: {err}");
    }
    let type_only = CreateRequest {
        options: [("type".into(), "tmpfs".into())].into(),
        ..named("typeonly")
    };
    let err = fx.svc.create(type_only).unwrap_err();
    assert_eq!(
        err.to_string(),
        "create typeonly: missing required option: \"device\""
    );
    assert!(fx.svc.list(&Filters::new()).unwrap().is_empty());
    let entries = std::fs::read_dir(fx.dir.path().join("volumes"))
        .unwrap()
        .count();
    assert_eq!(entries, 0);
}

#[test]
fn anonymous_volumes_are_labelled() {
    let fx = fixture();
    let (v, _) = fx.svc.create(CreateRequest::default()).unwrap();
    assert_eq!(v.name.len(), 64);
    assert_eq!(
        v.labels
            .get("com.docker.volume.anonymous")
            .map(String::as_str),
        Some("")
    );
}

#[test]
fn list_filters() {
    let fx = fixture();
    fx.svc
        .create(with_labels("app-data", &[("tier", "db"), ("x", "")]))
        .unwrap();
    fx.svc
        .create(with_labels("web-cache", &[("tier", "web")]))
        .unwrap();
    fx.svc.create(named("plain")).unwrap();
    fx.svc.add_ref("plain", "ctr1").unwrap();
    assert_eq!(
        names(&fx.svc, &filters(&[("label", "tier")])),
        ["app-data", "web-cache"]
    );
    assert_eq!(
        names(&fx.svc, &filters(&[("label", "tier=db"), ("label", "x")])),
        ["app-data"]
    );
    assert_eq!(
        names(&fx.svc, &filters(&[("name", "cache|plain")])),
        ["plain", "web-cache"]
    );
    assert_eq!(
        names(&fx.svc, &filters(&[("dangling", "false")])),
        ["plain"]
    );
    assert_eq!(
        names(&fx.svc, &filters(&[("dangling", "1")])),
        ["app-data", "web-cache"]
    );
    assert_eq!(names(&fx.svc, &filters(&[("driver", "local")])).len(), 3);
    assert!(names(&fx.svc, &filters(&[("driver", "loc")])).is_empty());
    for bad in [("dangling", "maybe"), ("colour", "red")] {
        let err = fx.svc.list(&filters(&[bad])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn remove_in_use_names_holders_and_force_does_not_bypass() {
    let fx = fixture();
    fx.svc.create(named("held")).unwrap();
    fx.svc.add_ref("held", "c2").unwrap();
    fx.svc.add_ref("held", "c1").unwrap();
    for force in [false, true] {
        let err = fx.svc.remove("held", force).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.to_string(), "remove held: volume is in use - [c1, c2]");
    }
    fx.svc.remove_ref("held", "c1").unwrap();
    fx.svc.remove_ref("held", "c2").unwrap();
    assert!(fx.svc.remove("held", false).unwrap());
    assert!(!fx.dir.path().join("volumes/held").exists());
    let err = fx.svc.remove("held", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "get held: no such volume");
    assert!(!fx.svc.remove("held", true).unwrap());
}

#[test]
fn prune_defaults_to_anonymous_and_respects_filters() {
    let fx = fixture();
    let (anon, _) = fx.svc.create(CreateRequest::default()).unwrap();
    std::fs::write(anon.mountpoint.join("f"), vec![1u8; 4096]).unwrap();
    fx.svc
        .create(with_labels("keep", &[("keep", "yes")]))
        .unwrap();
    fx.svc.create(named("named")).unwrap();
    fx.svc.create(named("used")).unwrap();
    fx.svc.add_ref("used", "c1").unwrap();
    let tmpfs = CreateRequest {
        options: [
            ("type".into(), "tmpfs".into()),
            ("device".into(), "tmpfs".into()),
        ]
        .into(),
        ..named("withopts")
    };
    fx.svc.create(tmpfs).unwrap();

    let report = fx.svc.prune(&Filters::new()).unwrap();
    assert_eq!(report.deleted, std::slice::from_ref(&anon.name));
    assert_eq!(report.space_reclaimed, 4096);

    let report = fx
        .svc
        .prune(&filters(&[("all", "true"), ("label!", "keep")]))
        .unwrap();
    assert_eq!(report.deleted, ["named"]);
    let report = fx
        .svc
        .prune(&filters(&[("all", "1"), ("label", "keep=yes")]))
        .unwrap();
    assert_eq!(report.deleted, ["keep"]);
    assert_eq!(names(&fx.svc, &Filters::new()), ["used", "withopts"]);
    let err = fx.svc.prune(&filters(&[("dangling", "true")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn tmpfs_volume_mounts_at_first_id_and_unmounts_at_last() {
    let fx = fixture();
    let req = CreateRequest {
        options: BTreeMap::from([
            ("type".into(), "tmpfs".into()),
            ("device".into(), "tmpfs".into()),
            ("o".into(), "size=1m".into()),
        ]),
        ..named("scratch")
    };
    let (v, _) = fx.svc.create(req).unwrap();
    assert!(!is_mounted(&v.mountpoint));
    let path = fx.svc.mount("scratch", "a").unwrap();
    assert!(is_mounted(&path));
    std::fs::write(path.join("f"), b"x").unwrap();
    fx.svc.mount("scratch", "b").unwrap();
    assert_eq!(
        fx.svc.remove("scratch", true).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert!(fx.svc.unmount("scratch", "a").unwrap());
    assert!(is_mounted(&path), "still mounted for id b");
    assert!(fx.svc.unmount("scratch", "b").unwrap());
    assert!(!is_mounted(&path));
    assert!(
        !path.join("f").exists(),
        "tmpfs content is gone after last unmount"
    );
    fx.svc.remove("scratch", false).unwrap();
}

#[test]
fn mounts_survive_restart_and_are_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let req = CreateRequest {
        options: BTreeMap::from([
            ("type".into(), "tmpfs".into()),
            ("device".into(), "tmpfs".into()),
        ]),
        ..named("live")
    };
    let path = {
        let svc = service_at(dir.path());
        svc.reconcile().unwrap();
        svc.create(req).unwrap();
        svc.mount("live", "c1").unwrap()
    };
    let svc = service_at(dir.path());
    let report = svc.reconcile().unwrap();
    assert_eq!(report.remounted, 1);
    assert_eq!(
        svc.remove("live", false).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert!(svc.unmount("live", "c1").unwrap());
    assert!(!is_mounted(&path));
    svc.remove("live", false).unwrap();
}

#[test]
fn reconcile_repairs_interrupted_and_foreign_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let svc = service_at(dir.path());
        svc.reconcile().unwrap();
        svc.create(named("lost")).unwrap();
        svc.mark_populated("lost").unwrap();
        svc.create(named("fresh")).unwrap();
        svc.create(named("gone")).unwrap();
    }
    // Simulate: lost's folder (a volume a container used) deleted by hand,
    // fresh's never made (a crash just after its row committed), a folder
    // restored by hand, and rows left mid-create and mid-remove by a crash.
    std::fs::remove_dir_all(dir.path().join("volumes/lost")).unwrap();
    std::fs::remove_dir_all(dir.path().join("volumes/fresh")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes/restored/_data")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes/bad name/_data")).unwrap();
    let conn = simulate_crash_leftovers(dir.path());
    drop(conn);
    let svc = service_at(dir.path());
    let report = svc.reconcile().unwrap();
    assert_eq!(report.recreated, ["lost"]);
    assert_eq!(report.made, ["fresh"]);
    assert_eq!(report.adopted, ["restored"]);
    assert_eq!(report.rolled_back, ["half"]);
    assert_eq!(report.finished_removals, ["gone"]);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(names(&svc, &Filters::new()), ["fresh", "lost", "restored"]);
    assert!(!dir.path().join("volumes/gone").exists());
    assert!(!dir.path().join("volumes/half").exists());
    assert!(
        dir.path().join("volumes/bad name").exists(),
        "unknown folders are left alone"
    );
    assert_eq!(svc.warnings().len(), 3);
}

/// Puts the store into the state a crash leaves: a `creating` row with its
/// folder half made, and a `removing` row.
fn simulate_crash_leftovers(root: &Path) -> Store {
    let store = Store::open(&root.join("berth.db")).unwrap();
    store
        .insert_volume(&berth_core::store::VolumeRecord {
            name: "half".into(),
            uid: berth_core::store::VolumeRecord::new_uid(),
            driver: "local".into(),
            created_at: 0,
            state: berth_core::store::VolumeState::Creating,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        })
        .unwrap();
    std::fs::create_dir_all(root.join("volumes/half")).unwrap();
    store
        .set_volume_state("gone", berth_core::store::VolumeState::Removing)
        .unwrap();
    store
}

#[test]
fn concurrent_prune_is_a_conflict() {
    const N: usize = 2000;
    let fx = Arc::new(fixture());
    for _ in 0..N {
        fx.svc.create(CreateRequest::default()).unwrap();
    }
    // Two prunes let go at once: one removes everything, the other, which
    // starts while the first holds the flag, is refused.
    let start = Arc::new(std::sync::Barrier::new(2));
    let (other, other_start) = (fx.clone(), start.clone());
    let first = std::thread::spawn(move || {
        other_start.wait();
        other.svc.prune(&Filters::new())
    });
    start.wait();
    let second = fx.svc.prune(&Filters::new());
    let first = first.join().unwrap();
    let (won, lost) = match (first, second) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("want one prune and one conflict, got {other:?}"),
    };
    assert_eq!(lost.kind(), ErrorKind::Conflict);
    assert_eq!(won.deleted.len(), N);
    assert!(fx.svc.list(&Filters::new()).unwrap().is_empty());
}

#[test]
fn rename_moves_the_row_the_labels_and_the_folder() {
    let f = fixture();
    f.svc.create(with_labels("va", &[("k", "v")])).unwrap();
    std::fs::write(f.dir.path().join("volumes/va/_data/x"), b"1").unwrap();
    let renamed = f.svc.rename("va", "vb").unwrap();
    assert_eq!(renamed.name, "vb");
    assert_eq!(renamed.labels.get("k").map(String::as_str), Some("v"));
    assert!(f.dir.path().join("volumes/vb/_data/x").exists());
    assert!(!f.dir.path().join("volumes/va").exists());
    assert_eq!(f.svc.get("va").unwrap_err().kind(), ErrorKind::NotFound);
    // Held volumes and taken names are refused, and nothing changes.
    f.svc.create(named("vc")).unwrap();
    f.svc.add_ref("vb", "ctr1").unwrap();
    assert_eq!(
        f.svc.rename("vb", "vd").unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        f.svc.rename("vc", "vb").unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert!(f.svc.get("vb").is_ok() && f.svc.get("vc").is_ok());
}

#[test]
fn a_restart_settles_a_rename_the_crash_cut() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service_at(dir.path());
    svc.reconcile().unwrap();
    svc.create(with_labels("old", &[("k", "v")])).unwrap();
    drop(svc);
    // The journal row and the folder move happened; the row move did not.
    let store = Store::open(&dir.path().join("berth.db")).unwrap();
    store.begin_rename("old", "new").unwrap();
    drop(store);
    std::fs::rename(
        dir.path().join("volumes/old"),
        dir.path().join("volumes/new"),
    )
    .unwrap();
    let svc = service_at(dir.path());
    let report = svc.reconcile().unwrap();
    assert_eq!(report.renamed, vec!["old -> new".to_string()]);
    assert_eq!(
        svc.get("new").unwrap().labels.get("k").map(String::as_str),
        Some("v")
    );
    assert!(svc.get("old").is_err());
}

fn service_and_store(root: &Path, driver: Arc<dyn VolumeDriver>) -> (VolumeService, Arc<Store>) {
    let layout = RootLayout::create(root).unwrap();
    let store = Arc::new(Store::open(&layout.db_path()).unwrap());
    let mut drivers = DriverRegistry::default();
    drivers.register(driver);
    let svc = VolumeService::new(store.clone(), drivers);
    svc.reconcile().unwrap();
    (svc, store)
}

fn local_driver(root: &Path) -> Arc<dyn VolumeDriver> {
    Arc::new(LocalDriver::new(
        &RootLayout::create(root).unwrap().volumes_dir(),
    ))
}

/// The local driver, whose renames can be told to fail: `fail` renames
/// fail from now on, and the first failing one moves the storage first (a
/// rename that fails after its last step, or whose error is spurious).
struct FlakyDriver {
    inner: Arc<dyn VolumeDriver>,
    fail: std::sync::atomic::AtomicUsize,
    move_first: std::sync::atomic::AtomicBool,
}

impl FlakyDriver {
    fn new(root: &Path, fail: usize, move_first: bool) -> Arc<Self> {
        Arc::new(FlakyDriver {
            inner: local_driver(root),
            fail: fail.into(),
            move_first: move_first.into(),
        })
    }
}

impl VolumeDriver for FlakyDriver {
    fn name(&self) -> &str {
        "local"
    }
    fn validate(&self, options: &DriverOptions) -> Result<(), DriverError> {
        self.inner.validate(options)
    }
    fn create(&self, name: &str, options: &DriverOptions) -> Result<bool, DriverError> {
        self.inner.create(name, options)
    }
    fn remove(&self, name: &str) -> Result<bool, DriverError> {
        self.inner.remove(name)
    }
    fn path(&self, name: &str) -> Result<Option<std::path::PathBuf>, DriverError> {
        self.inner.path(name)
    }
    fn mount(
        &self,
        name: &str,
        options: &DriverOptions,
        id: &str,
    ) -> Result<std::path::PathBuf, DriverError> {
        self.inner.mount(name, options, id)
    }
    fn unmount(&self, name: &str, id: &str) -> Result<bool, DriverError> {
        self.inner.unmount(name, id)
    }
    fn rename(&self, old: &str, new: &str) -> Result<(), DriverError> {
        use std::sync::atomic::Ordering::SeqCst;
        let failing = self
            .fail
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !failing {
            return self.inner.rename(old, new);
        }
        if self.move_first.swap(false, SeqCst) {
            self.inner.rename(old, new)?;
        }
        Err(DriverError::Unsupported("injected rename failure".into()))
    }
    fn get(&self, name: &str) -> Result<Option<DriverVolume>, DriverError> {
        self.inner.get(name)
    }
    fn list(&self) -> Result<Vec<DriverVolume>, DriverError> {
        self.inner.list()
    }
}

fn write_file(svc: &VolumeService, vol: &str, file: &str, data: &[u8]) {
    std::fs::write(svc.get(vol).unwrap().mountpoint.join(file), data).unwrap();
}

#[test]
fn a_failed_rename_whose_undo_fails_keeps_its_journal_and_start_up_settles_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The storage moves, the driver still fails, and so does the undo.
        let (svc, store) = service_and_store(dir.path(), FlakyDriver::new(dir.path(), 2, true));
        svc.create(with_labels("old", &[("k", "v")])).unwrap();
        write_file(&svc, "old", "f", b"data");
        let err = svc.rename("old", "new").unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(
            store.pending_renames().unwrap(),
            [("old".into(), "new".into())]
        );
        assert!(dir.path().join("volumes/new/_data/f").exists());
        // Until a restart, neither name can be used, removed or taken.
        for err in [
            svc.remove("old", false).unwrap_err(),
            svc.remove("old", true).unwrap_err(),
            svc.create(named("new")).unwrap_err(),
            svc.create(named("old")).unwrap_err(),
            svc.rename("old", "other").unwrap_err(),
            svc.mount("old", "ctr").unwrap_err(),
            svc.add_ref("old", "ctr").unwrap_err(),
            svc.update_labels("old", &BTreeMap::new(), &[]).unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
            assert!(err.to_string().contains("restart the daemon"), "{err}");
        }
        assert!(svc
            .prune(&filters(&[("all", "true")]))
            .unwrap()
            .deleted
            .is_empty());
        assert!(dir.path().join("volumes/new/_data/f").exists());
        assert_eq!(store.pending_renames().unwrap().len(), 1);
    }
    // Start-up finds the storage under the new name: the rename is finished,
    // nothing is recreated empty.
    let (svc, store) = service_and_store(dir.path(), local_driver(dir.path()));
    assert!(store.pending_renames().unwrap().is_empty());
    assert_eq!(names(&svc, &Filters::new()), ["new"]);
    let v = svc.get("new").unwrap();
    assert_eq!(v.labels.get("k").map(String::as_str), Some("v"));
    assert_eq!(std::fs::read(v.mountpoint.join("f")).unwrap(), b"data");
    assert!(svc.warnings().is_empty(), "{:?}", svc.warnings());
}

#[test]
fn a_failed_rename_that_is_undone_ends_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, store) = service_and_store(dir.path(), FlakyDriver::new(dir.path(), 1, true));
    svc.create(named("old")).unwrap();
    write_file(&svc, "old", "f", b"data");
    assert!(svc.rename("old", "new").is_err());
    assert!(store.pending_renames().unwrap().is_empty());
    assert_eq!(names(&svc, &Filters::new()), ["old"]);
    assert!(dir.path().join("volumes/old/_data/f").exists());
    assert!(!dir.path().join("volumes/new").exists());
    svc.rename("old", "new").unwrap(); // and the names are usable again
}

#[test]
fn rename_and_clone_refuse_storage_already_under_the_new_name() {
    let f = fixture();
    f.svc.create(named("va")).unwrap();
    write_file(&f.svc, "va", "mine", b"va");
    // A folder no row knows (left behind, restored by hand) is not replaced.
    let orphan = f.dir.path().join("volumes/vb/_data");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("theirs"), b"vb").unwrap();
    for err in [
        f.svc.rename("va", "vb").unwrap_err(),
        f.svc.clone_volume("va", "vb").unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("already has storage"), "{err}");
    }
    assert_eq!(std::fs::read(orphan.join("theirs")).unwrap(), b"vb");
    assert!(!orphan.join("mine").exists());
    assert_eq!(names(&f.svc, &Filters::new()), ["va"]);
    assert!(f.dir.path().join("volumes/va/_data/mine").exists());
}

#[test]
fn start_up_undoes_a_journalled_rename_with_storage_under_both_names() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (svc, store) = service_and_store(dir.path(), local_driver(dir.path()));
        svc.create(named("old")).unwrap();
        write_file(&svc, "old", "f", b"old");
        // A journal from a build that did not check the new name, whose
        // storage predates the rename.
        std::fs::create_dir_all(dir.path().join("volumes/new/_data")).unwrap();
        std::fs::write(dir.path().join("volumes/new/_data/f"), b"new").unwrap();
        store.begin_rename("old", "new").unwrap();
    }
    let svc = service_at(dir.path());
    let report = svc.reconcile().unwrap();
    assert_eq!(report.rename_undone, ["old"]);
    assert!(report.recreated.is_empty(), "{report:?}");
    for (vol, data) in [("old", b"old"), ("new", b"new")] {
        let path = svc.get(vol).unwrap().mountpoint.join("f");
        assert_eq!(std::fs::read(path).unwrap(), data, "{vol}");
    }
}

#[test]
fn names_in_an_unfinished_rename_are_refused() {
    let f = fixture();
    let layout = RootLayout::create(f.dir.path()).unwrap();
    let store = Store::open(&layout.db_path()).unwrap();
    f.svc.create(named("old")).unwrap();
    f.svc.create(named("src")).unwrap();
    store.begin_rename("old", "new").unwrap();
    for err in [
        f.svc.create(named("new")).unwrap_err(),
        f.svc.clone_volume("src", "new").unwrap_err(),
        f.svc.rename("src", "new").unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(
            err.to_string()
                .contains("a rename of old to new is unfinished"),
            "{err}"
        );
    }
    assert!(!f.dir.path().join("volumes/new").exists());
    store.abort_rename("old").unwrap();
    f.svc.create(named("new")).unwrap();
}

#[test]
fn renamed_or_cloned_anonymous_volumes_are_no_longer_anonymous() {
    let f = fixture();
    let anonymous = |f: &Fixture| f.svc.create(CreateRequest::default()).unwrap().0.name;
    let (a, b) = (anonymous(&f), anonymous(&f));
    f.svc
        .update_labels(&a, &[("k".into(), "v".into())].into(), &[])
        .unwrap();
    let renamed = f.svc.rename(&a, "keep-me").unwrap();
    assert_eq!(renamed.labels, BTreeMap::from([("k".into(), "v".into())]));
    let cloned = f.svc.clone_volume(&b, "copy-me").unwrap();
    assert!(cloned.labels.is_empty(), "{:?}", cloned.labels);
    let report = f.svc.prune(&Filters::new()).unwrap();
    assert_eq!(report.deleted, [b]);
    assert_eq!(names(&f.svc, &Filters::new()), ["copy-me", "keep-me"]);
    // The label is berth's to set.
    let add = BTreeMap::from([("com.docker.volume.anonymous".into(), String::new())]);
    let err = f.svc.update_labels("keep-me", &add, &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(f.svc.get("keep-me").unwrap().labels.len(), 1);
}

#[test]
fn operation_mounts_publish_no_container_events() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(berth_core::events::EventBus::default());
    let svc = service_at(dir.path()).with_events(bus.clone());
    svc.reconcile().unwrap();
    svc.create(named("vol")).unwrap();
    let op = format!("{}export-1234", berth_core::volume::OPERATION_MOUNT_PREFIX);
    for id in [op.as_str(), "ctr1"] {
        svc.mount("vol", id).unwrap();
        assert!(svc.unmount("vol", id).unwrap());
    }
    let seen: Vec<(String, String)> = bus
        .subscribe()
        .0
        .into_iter()
        .filter(|e| e.action == "mount" || e.action == "unmount")
        .map(|e| (e.action, e.attributes["container"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("mount".into(), "ctr1".into()),
            ("unmount".into(), "ctr1".into())
        ]
    );
}

/// The uid the store holds for `name` (read with a second connection, as
/// a crash test would read the file).
fn uid_of(root: &Path, name: &str) -> String {
    let conn = rusqlite::Connection::open(root.join("berth.db")).unwrap();
    conn.query_row("SELECT uid FROM volumes WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn start_up_undoes_an_uncommitted_remove_and_finishes_a_committed_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let svc = service_at(dir.path());
        svc.reconcile().unwrap();
        svc.create(named("kept")).unwrap();
        std::fs::write(dir.path().join("volumes/kept/_data/f"), b"data").unwrap();
    }
    // A crash after the storage went to the trash, before the delete
    // committed; and the trash of a remove that did commit.
    let trash = dir.path().join("volumes/.trash");
    std::fs::create_dir_all(&trash).unwrap();
    let uid = uid_of(dir.path(), "kept");
    std::fs::rename(dir.path().join("volumes/kept"), trash.join(&uid)).unwrap();
    std::fs::create_dir_all(trash.join("0123abcd/_data/deep")).unwrap();
    std::fs::write(trash.join("0123abcd/_data/deep/f"), b"old").unwrap();
    let svc = service_at(dir.path());
    let report = svc.reconcile().unwrap();
    assert_eq!(report.removes_undone, ["kept"]);
    assert_eq!(report.trash_destroyed, 1);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let data = std::fs::read(dir.path().join("volumes/kept/_data/f")).unwrap();
    assert_eq!(data, b"data");
    assert_eq!(names(&svc, &Filters::new()), ["kept"]);
    wait_until_gone(&trash.join("0123abcd"));
}

#[test]
fn remove_goes_through_the_trash_and_a_new_volume_of_the_name_is_new() {
    let f = fixture();
    f.svc.create(named("vol")).unwrap();
    std::fs::write(f.dir.path().join("volumes/vol/_data/f"), b"1").unwrap();
    let first_uid = uid_of(f.dir.path(), "vol");
    assert!(f.svc.remove("vol", false).unwrap());
    assert!(!f.dir.path().join("volumes/vol").exists());
    f.svc.create(named("vol")).unwrap();
    assert_ne!(uid_of(f.dir.path(), "vol"), first_uid);
    let listed = std::fs::read_dir(f.dir.path().join("volumes/vol/_data")).unwrap();
    assert_eq!(listed.count(), 0, "the new volume starts empty");
    wait_until_gone(&f.dir.path().join("volumes/.trash").join(first_uid));
    // The store's in-memory rows and the database agree after a reopen.
    let before = f.svc.list(&Filters::new()).unwrap();
    let again = service_at(f.dir.path());
    assert_eq!(again.list(&Filters::new()).unwrap(), before);
}

fn wait_until_gone(path: &Path) {
    for _ in 0..500 {
        if !path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} was never destroyed", path.display());
}
