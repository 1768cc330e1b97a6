//! The image store over a real root: imports and loads of real tar
//! streams, whiteouts, hostile archives.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use berth_core::image::{ImageService, ImportRequest, Reference, RemoveAction};
use berth_core::store::Store;
use berth_core::ErrorKind;

fn service(root: &Path) -> ImageService {
    let store = Arc::new(Store::open(&root.join("berth.db")).unwrap());
    ImageService::new(store, &root.join("images")).unwrap()
}

/// A tar entry with any name bytes (the tar crate's builder refuses `..`).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_uid(1000);
    header.set_gid(1000);
    header.set_mtime(1_600_000_000);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend(std::iter::repeat_n(0u8, 1024));
    tar
}

fn import(
    svc: &ImageService,
    tar: &[u8],
    tag: &str,
    changes: &[&str],
) -> Result<berth_core::store::ImageRecord, berth_core::image::ImageError> {
    let req = ImportRequest {
        reference: Some(Reference::parse(tag).unwrap()),
        changes: changes.iter().map(|s| s.to_string()).collect(),
        message: None,
    };
    svc.import(req, tar)
}

#[test]
fn import_extracts_with_owners_modes_links_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let mut tar = Vec::new();
    raw_entry(&mut tar, "bin/", tar::EntryType::Directory, "", b"");
    raw_entry(
        &mut tar,
        "bin/tool",
        tar::EntryType::Regular,
        "",
        b"#!/bin/sh\n",
    );
    raw_entry(&mut tar, "bin/alias", tar::EntryType::Link, "bin/tool", b"");
    raw_entry(
        &mut tar,
        "etc/abs",
        tar::EntryType::Symlink,
        "/etc/passwd",
        b"",
    );
    let image = import(
        &svc,
        &finish(tar),
        "img:1",
        &["CMD [\"tool\"]", "VOLUME /data"],
    )
    .unwrap();
    assert_eq!(image.tags, ["img:1"]);
    let layer = &svc.layer_paths(&image)[0];
    let meta = std::fs::metadata(layer.join("bin/tool")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (1000, 1000, 0o644)
    );
    assert_eq!(meta.nlink(), 2, "hard link kept");
    assert_eq!(
        std::fs::read_link(layer.join("etc/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    let config = svc.config(&image).unwrap();
    assert_eq!(config.config.cmd.unwrap(), ["tool"]);
    assert!(config.config.volumes.unwrap().contains_key("/data"));
    assert_eq!(svc.resolve("img:1").unwrap().id, image.id);
    assert_eq!(svc.resolve(&image.id[7..19]).unwrap().id, image.id);
    assert_eq!(
        svc.resolve("nosuch").unwrap_err().to_string(),
        "No such image: nosuch:latest"
    );
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let mut tar = Vec::new();
    raw_entry(&mut tar, "gone/", tar::EntryType::Directory, "", b"");
    raw_entry(
        &mut tar,
        "gone/.wh..wh..opq",
        tar::EntryType::Regular,
        "",
        b"",
    );
    raw_entry(&mut tar, ".wh.deleted", tar::EntryType::Regular, "", b"");
    let image = import(&svc, &finish(tar), "wh:1", &[]).unwrap();
    let layer = &svc.layer_paths(&image)[0];
    let meta = std::fs::symlink_metadata(layer.join("deleted")).unwrap();
    assert!(meta.file_type().is_char_device() && meta.rdev() == 0);
    let mut buf = [0u8; 4];
    let c_path = std::ffi::CString::new(layer.join("gone").to_str().unwrap()).unwrap();
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            4,
        )
    };
    assert_eq!(&buf[..n as usize], b"y");
}

#[test]
fn hostile_archives_write_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        {
            let mut t = Vec::new();
            raw_entry(
                &mut t,
                "../outside/pwned",
                tar::EntryType::Regular,
                "",
                b"x",
            );
            t
        },
        {
            let mut t = Vec::new();
            raw_entry(
                &mut t,
                "a/../../outside/pwned",
                tar::EntryType::Regular,
                "",
                b"x",
            );
            t
        },
        {
            let mut t = Vec::new();
            let target = outside.to_str().unwrap().to_string();
            raw_entry(&mut t, "link", tar::EntryType::Symlink, &target, b"");
            raw_entry(&mut t, "link/pwned", tar::EntryType::Regular, "", b"x");
            t
        },
        {
            let mut t = Vec::new();
            raw_entry(&mut t, "up", tar::EntryType::Symlink, "../../..", b"");
            raw_entry(
                &mut t,
                "up/outside/pwned",
                tar::EntryType::Regular,
                "",
                b"x",
            );
            t
        },
        {
            let mut t = Vec::new();
            raw_entry(&mut t, "hl", tar::EntryType::Link, "../outside/secret", b"");
            t
        },
    ];
    for (i, tar) in cases.into_iter().enumerate() {
        let err = import(&svc, &finish(tar), "bad:1", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "case {i}: {err}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // Absolute entry names are contained, not refused.
    let mut t = Vec::new();
    raw_entry(&mut t, "/etc/contained", tar::EntryType::Regular, "", b"x");
    let image = import(&svc, &finish(t), "abs:1", &[]).unwrap();
    assert!(svc.layer_paths(&image)[0].join("etc/contained").is_file());
    assert!(
        svc.resolve("bad:1").is_err(),
        "failed imports record nothing"
    );
    assert!(svc.reconcile().unwrap().is_empty());
}

#[test]
fn bad_changes_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let err = import(&svc, b"not a tar at all", "x:1", &["RUN rm -rf /"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(svc.list().unwrap().is_empty());
}

#[test]
fn tags_and_removal_follow_docker() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let mut tar = Vec::new();
    raw_entry(&mut tar, "f", tar::EntryType::Regular, "", b"data");
    let image = import(&svc, &finish(tar), "a:1", &[]).unwrap();
    svc.tag("a:1", &Reference::parse("b").unwrap()).unwrap();
    let none = |_: &str| Vec::<(String, bool)>::new();
    assert_eq!(
        svc.remove("b:latest", false, &none).unwrap(),
        [RemoveAction::Untagged("b:latest".into())]
    );
    svc.tag("a:1", &Reference::parse("b").unwrap()).unwrap();
    let err = svc.remove(&image.id, false, &none).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let used = |_: &str| vec![("0123456789abcdef".to_string(), false)];
    assert_eq!(
        svc.remove("a:1", false, &used).unwrap(),
        [RemoveAction::Untagged("a:1".into())]
    );
    assert_eq!(
        svc.remove("b", false, &used).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let layer = svc.layer_paths(&image)[0].clone();
    let actions = svc.remove("b", false, &none).unwrap();
    // As Docker: untagged, the image deleted, then its released layer
    // (a one-layer image's chain ID is its diff ID).
    let diff_id = image.layers[0].0.clone();
    assert_eq!(
        actions,
        [
            RemoveAction::Untagged("b:latest".into()),
            RemoveAction::Deleted(image.id.clone()),
            RemoveAction::Deleted(diff_id),
        ]
    );
    assert!(!layer.exists(), "unused layer folder removed");
}

#[test]
fn load_reads_docker_save_archives_and_checks_digests() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let mut layer = Vec::new();
    raw_entry(&mut layer, "hello", tar::EntryType::Regular, "", b"hi");
    let layer = finish(layer);
    let diff_id = berth_core::image::layers::digest(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let config_digest = berth_core::image::layers::digest(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["saved:v1"],"Layers":["l1/layer.tar"]}}]"#,
        &config_digest[7..]
    );
    let mut archive = tar::Builder::new(Vec::new());
    for (name, data) in [
        (format!("{}.json", &config_digest[7..]), config.as_bytes()),
        ("l1/layer.tar".to_string(), &layer[..]),
        ("manifest.json".to_string(), manifest.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        archive.append_data(&mut h, name, data).unwrap();
    }
    let bytes = archive.into_inner().unwrap();
    let loaded = svc.load(&bytes[..]).unwrap();
    assert_eq!(loaded[0].id, config_digest);
    assert_eq!(svc.resolve("saved:v1").unwrap().id, config_digest);
    assert!(svc.layer_paths(&loaded[0])[0].join("hello").is_file());

    // The same archive with a tampered layer is refused.
    let tampered = String::from_utf8_lossy(&bytes).replace("hi", "ho");
    let mut f = std::fs::File::create(dir.path().join("t.tar")).unwrap();
    f.write_all(tampered.as_bytes()).unwrap();
    let err = svc.load(std::fs::File::open(dir.path().join("t.tar")).unwrap());
    assert!(err.is_err());
}
