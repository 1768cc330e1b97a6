//! The body of `GET /volumes`, written directly instead of through serde.
//!
//! At 100,000 volumes, serde_json's string escaping and map machinery were
//! over a quarter of a list's time (`format_escaped_str` alone 19–24 %). The
//! names, dates, drivers and paths of a list never need escaping, and a check
//! that a string needs none is cheaper than escaping it byte by byte. It is
//! written straight from the core's rows: building a borrowed struct per
//! volume first cost an allocated date and a UTF-8 pass over every
//! mountpoint, and a second array of 100,000 entries. The output is byte
//! for byte what serde_json writes for the answer's typed shape
//! (`VolumeListRefJson` in the tests); the tests compare the two on hostile
//! input.

use std::collections::BTreeMap;

use berth_core::volume::ListedVolume;

use crate::types::rfc3339_local;

/// Bytes per volume a list usually takes: the buffer is sized once.
const BYTES_PER_VOLUME: usize = 224;

/// The JSON of `GET /volumes` for `volumes` and `warnings`: the same bytes
/// as `serde_json::to_vec` of the typed shape (`VolumeListRefJson`, tests),
/// written
/// from the core's shared rows without a per-volume copy or allocation.
pub fn list_body(volumes: &[ListedVolume], warnings: Option<&[String]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + volumes.len() * BYTES_PER_VOLUME);
    let mut dates = CreatedAt::default();
    out.extend_from_slice(b"{\"Volumes\":[");
    for (i, volume) in volumes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_volume(&mut out, volume, &mut dates);
    }
    out.extend_from_slice(b"],\"Warnings\":");
    write_serde(&mut out, &warnings);
    out.push(b'}');
    out
}

/// The text of the last creation time written: volumes made in the same
/// second (most of a large list) share it.
#[derive(Default)]
struct CreatedAt {
    last: Option<(i64, String)>,
}

impl CreatedAt {
    fn text(&mut self, secs: i64) -> &str {
        if self.last.as_ref().is_none_or(|(at, _)| *at != secs) {
            self.last = Some((secs, rfc3339_local(secs)));
        }
        self.last.as_ref().map_or("", |(_, text)| text)
    }
}

/// One volume's object, keys in the struct's (Docker's) order; labels and
/// options `null` when empty, as Docker's `volume.Volume` with `omitempty`.
fn write_volume(out: &mut Vec<u8>, v: &ListedVolume, dates: &mut CreatedAt) {
    let r = v.record.as_ref();
    out.extend_from_slice(b"{\"CreatedAt\":");
    write_str(out, dates.text(r.created_at));
    out.extend_from_slice(b",\"Driver\":");
    write_str(out, &r.driver);
    out.extend_from_slice(b",\"Labels\":");
    write_map(out, &r.labels);
    out.extend_from_slice(b",\"Mountpoint\":");
    match v.mountpoint.to_str() {
        Some(path) => write_str(out, path),
        None => write_str(out, &v.mountpoint.to_string_lossy()),
    }
    out.extend_from_slice(b",\"Name\":");
    write_str(out, &r.name);
    out.extend_from_slice(b",\"Options\":");
    write_map(out, &r.options);
    out.extend_from_slice(b",\"Scope\":");
    write_str(out, v.scope.as_str());
    out.push(b'}');
}

/// A JSON string: copied as is when nothing in it needs escaping (what
/// serde_json escapes: `"`, `\` and control characters below 0x20),
/// otherwise left to serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_serde(out, s);
    }
}

/// Labels and options: `null` when empty (most volumes), else serde's.
fn write_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    match map.is_empty() {
        true => out.extend_from_slice(b"null"),
        false => write_serde(out, map),
    }
}

fn write_serde<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing strings, maps of strings and lists of strings into a Vec
    // cannot fail.
    serde_json::to_writer(out, value).expect("strings serialise");
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::driver::Scope;
    use berth_core::store::{VolumeRecord, VolumeState};
    use std::path::PathBuf;
    use std::sync::Arc;

    /// `volume.ListResponse` (both keys always present), of borrowed
    /// volumes: the answer's typed shape, which serde writes as Docker's
    /// JSON. `list_body` must write the same bytes.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct VolumeListRefJson<'a> {
        volumes: Vec<ListedVolumeJson<'a>>,
        warnings: Option<Vec<String>>,
    }

    /// One volume of a list: the keys of `VolumeJson` without `Status` and
    /// `UsageData`, which a list never has.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct ListedVolumeJson<'a> {
        created_at: String,
        driver: &'a str,
        labels: Option<&'a BTreeMap<String, String>>,
        mountpoint: std::borrow::Cow<'a, str>,
        name: &'a str,
        options: Option<&'a BTreeMap<String, String>>,
        scope: &'static str,
    }

    impl<'a> From<&'a ListedVolume> for ListedVolumeJson<'a> {
        fn from(v: &'a ListedVolume) -> Self {
            let r = v.record.as_ref();
            ListedVolumeJson {
                created_at: rfc3339_local(r.created_at),
                driver: &r.driver,
                labels: (!r.labels.is_empty()).then_some(&r.labels),
                mountpoint: v.mountpoint.to_string_lossy(),
                name: &r.name,
                options: (!r.options.is_empty()).then_some(&r.options),
                scope: v.scope.as_str(),
            }
        }
    }

    fn volume(name: &str, created_at: i64) -> ListedVolume {
        ListedVolume {
            record: Arc::new(VolumeRecord {
                name: name.into(),
                uid: VolumeRecord::new_uid(),
                driver: "local".into(),
                created_at,
                state: VolumeState::Ready,
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
            }),
            mountpoint: PathBuf::from(format!("/var/lib/berth/volumes/{name}/_data")),
            scope: Scope::Local,
        }
    }

    fn assert_same_as_serde(volumes: &[ListedVolume], warnings: Option<Vec<String>>) {
        let reference = VolumeListRefJson {
            volumes: volumes.iter().map(ListedVolumeJson::from).collect(),
            warnings: warnings.clone(),
        };
        let serde = serde_json::to_vec(&reference).unwrap();
        let mine = list_body(volumes, warnings.as_deref());
        assert_eq!(
            String::from_utf8(mine).unwrap(),
            String::from_utf8(serde).unwrap()
        );
    }

    #[test]
    fn an_empty_list_is_serdes() {
        assert_same_as_serde(&[], None);
        assert_eq!(list_body(&[], None), br#"{"Volumes":[],"Warnings":null}"#);
    }

    #[test]
    fn plain_volumes_and_warnings_are_serdes() {
        // Times shared, then changing, then back: the date cache follows.
        let volumes = [
            volume("a", 1_700_000_000),
            volume("b.c-d_e", 1_700_000_000),
            volume("c", 1_700_000_001),
            volume("d", 1_700_000_000),
            volume("e", -62_135_596_800_000),
        ];
        let warnings = Some(vec!["one".into(), "two \"quoted\"\n".into()]);
        assert_same_as_serde(&volumes, warnings);
        assert_same_as_serde(&volumes, Some(vec![]));
    }

    #[test]
    fn strings_that_need_escaping_are_serdes() {
        use std::os::unix::ffi::OsStrExt;
        let mut hostile = volume("x", 1_700_000_000);
        let record = Arc::make_mut(&mut hostile.record);
        record
            .labels
            .insert("k\"ey".into(), "v\\al\u{1}\u{1f}\t\n".into());
        record
            .labels
            .insert("ünïcode ✓".into(), "\u{7f}\u{2028}".into());
        record.options.insert("o".into(), "</script>".into());
        record.driver = "plug\"in\r".into();
        hostile.mountpoint = PathBuf::from("/a \"b\"\\c\u{0}/_data");
        hostile.scope = Scope::Global;
        // A mountpoint that is not UTF-8 is written as serde writes its
        // lossy text.
        let mut not_utf8 = volume("y", 1_700_000_002);
        not_utf8.mountpoint = PathBuf::from(std::ffi::OsStr::from_bytes(b"/v/\xff\xfe/_data"));
        assert_same_as_serde(&[volume("first", 1), hostile, not_utf8], None);
    }
}
