//! The volume service over a real root: a real SQLite file, real folders,
//! real tmpfs mounts. Each test has its own temporary root.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_core::driver::local::LocalDriver;
use berth_core::driver::DriverRegistry;
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
        svc.create(named("gone")).unwrap();
    }
    // Simulate: lost's folder deleted by hand, a folder restored by hand,
    // and rows left mid-create and mid-remove by a crash.
    std::fs::remove_dir_all(dir.path().join("volumes/lost")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes/restored/_data")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes/bad name/_data")).unwrap();
    let conn = simulate_crash_leftovers(dir.path());
    drop(conn);
    let svc = service_at(dir.path());
    let report = svc.reconcile().unwrap();
    assert_eq!(report.recreated, ["lost"]);
    assert_eq!(report.adopted, ["restored"]);
    assert_eq!(report.rolled_back, ["half"]);
    assert_eq!(report.finished_removals, ["gone"]);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(names(&svc, &Filters::new()), ["lost", "restored"]);
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
    const N: usize = 400;
    let fx = Arc::new(fixture());
    for _ in 0..N {
        fx.svc.create(CreateRequest::default()).unwrap();
    }
    let other = fx.clone();
    let first = std::thread::spawn(move || other.svc.prune(&Filters::new()));
    // Wait until the first prune is visibly half-way, then prune again.
    let second = loop {
        let left = fx.svc.list(&Filters::new()).unwrap().len();
        if left < N && left > N / 4 {
            break Some(fx.svc.prune(&Filters::new()));
        }
        if first.is_finished() {
            break None;
        }
    };
    let first = first.join().unwrap().unwrap();
    let second = second.expect("first prune finished before a second could start");
    assert_eq!(second.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(first.deleted.len(), N);
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
