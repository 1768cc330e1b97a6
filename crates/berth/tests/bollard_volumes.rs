//! The volume API driven by bollard, a client nobody on the team wrote,
//! against the real daemon binary.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::volume::{
    CreateVolumeOptions, ListVolumesOptions, PruneVolumesOptions, RemoveVolumeOptions,
};
use bollard::{ClientVersion, Docker};
use common::TestDaemon;

fn client(daemon: &TestDaemon) -> Docker {
    let version = ClientVersion {
        major_version: 1,
        minor_version: 45,
    };
    Docker::connect_with_unix(&daemon.sock_str(), 30, &version).expect("bollard client")
}

fn create_opts<'a>(name: &'a str, labels: &[(&'a str, &'a str)]) -> CreateVolumeOptions<&'a str> {
    CreateVolumeOptions {
        name,
        driver: "local",
        driver_opts: HashMap::new(),
        labels: labels.iter().copied().collect(),
    }
}

#[tokio::test]
async fn create_inspect_list_agree() {
    let daemon = TestDaemon::start();
    let docker = client(&daemon);
    let created = docker
        .create_volume(create_opts("bollard-a", &[("team", "data")]))
        .await
        .unwrap();
    let inspected = docker.inspect_volume("bollard-a").await.unwrap();
    assert_eq!(created, inspected);
    assert_eq!(created.labels.get("team").map(String::as_str), Some("data"));
    assert_eq!(
        created.mountpoint,
        daemon
            .root
            .join("volumes/bollard-a/_data")
            .display()
            .to_string()
    );
    let filters = HashMap::from([("label", vec!["team=data"])]);
    let listed = docker
        .list_volumes(Some(ListVolumesOptions { filters }))
        .await
        .unwrap();
    assert_eq!(listed.volumes.unwrap(), vec![created]);
}

#[tokio::test]
async fn prune_reports_anonymous_volume() {
    let daemon = TestDaemon::start();
    let docker = client(&daemon);
    let anon = docker.create_volume(create_opts("", &[])).await.unwrap();
    assert_eq!(anon.name.len(), 64);
    docker
        .create_volume(create_opts("named", &[]))
        .await
        .unwrap();
    let report = docker
        .prune_volumes(None::<PruneVolumesOptions<String>>)
        .await
        .unwrap();
    assert_eq!(report.volumes_deleted, Some(vec![anon.name]));
    docker.inspect_volume("named").await.unwrap();
}

#[tokio::test]
async fn unknown_volume_is_404_and_unknown_driver_fails_fast() {
    let daemon = TestDaemon::start();
    let docker = client(&daemon);
    match docker.inspect_volume("nosuch").await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }) => {
            assert_eq!(status_code, 404);
            assert_eq!(message, "get nosuch: no such volume");
        }
        other => panic!("expected 404, got {other:?}"),
    }
    let opts = RemoveVolumeOptions { force: false };
    assert!(docker.remove_volume("nosuch", Some(opts)).await.is_err());
    docker
        .remove_volume("nosuch", Some(RemoveVolumeOptions { force: true }))
        .await
        .unwrap();
    let started = Instant::now();
    let mut bad = create_opts("x1", &[]);
    bad.driver = "this-plugin-does-not-exist";
    match docker.create_volume(bad).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }) => {
            assert_eq!(status_code, 404);
            assert!(
                message.contains("plugin \"this-plugin-does-not-exist\" not found"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "unknown driver must fail fast"
    );
}
