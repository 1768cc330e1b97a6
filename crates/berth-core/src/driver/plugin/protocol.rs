//! The volume plugin protocol's messages (docker/cli
//! `docs/extend/plugins_volume.md`, moby `volume/drivers/proxy.go`), typed.
//! Every answer may carry `Err`; a non-empty one is the plugin's refusal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `/Plugin.Activate`'s answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activation {
    #[serde(default)]
    pub implements: Vec<String>,
}

/// `{Name}`: Remove, Path, Get.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NameRequest<'a> {
    pub name: &'a str,
}

/// `/VolumeDriver.Create`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest<'a> {
    pub name: &'a str,
    pub opts: &'a BTreeMap<String, String>,
}

/// `/VolumeDriver.Mount` and `.Unmount`.
#[derive(Debug, Serialize)]
pub struct MountRequest<'a> {
    #[serde(rename = "Name")]
    pub name: &'a str,
    #[serde(rename = "ID")]
    pub id: &'a str,
}

/// An answer with nothing but `Err` (Create, Remove, Unmount).
#[derive(Debug, Default, Deserialize)]
pub struct Empty {
    #[serde(rename = "Err", default)]
    pub err: String,
}

/// Mount and Path.
#[derive(Debug, Default, Deserialize)]
pub struct MountpointAnswer {
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
}

/// One volume in Get and List.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginVolume {
    pub name: String,
    #[serde(default)]
    pub mountpoint: String,
    #[serde(default)]
    pub status: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `/VolumeDriver.Get`.
#[derive(Debug, Default, Deserialize)]
pub struct GetAnswer {
    #[serde(rename = "Volume", default)]
    pub volume: Option<PluginVolume>,
}

/// `/VolumeDriver.List`.
#[derive(Debug, Default, Deserialize)]
pub struct ListAnswer {
    #[serde(rename = "Volumes", default)]
    pub volumes: Option<Vec<PluginVolume>>,
}

/// `/VolumeDriver.Capabilities`.
#[derive(Debug, Default, Deserialize)]
pub struct CapabilitiesAnswer {
    #[serde(rename = "Capabilities", default)]
    pub capabilities: CapabilitiesBody,
}

#[derive(Debug, Default, Deserialize)]
pub struct CapabilitiesBody {
    #[serde(rename = "Scope", default)]
    pub scope: String,
}

/// An answer that is not a good one.
#[derive(Debug, PartialEq, Eq)]
pub enum Bad {
    /// The plugin's own `Err`.
    Refused(String),
    /// Not JSON of the answer's shape.
    Json(String),
}

/// The longest refusal passed on to clients, in characters.
const MAX_REFUSAL: usize = 1024;

/// A plugin's `Err` as it reaches clients and logs: no control
/// characters (a terminal's escape sequences), at most [`MAX_REFUSAL`].
fn printable(err: &str) -> String {
    let mut out: String = (err.chars())
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REFUSAL)
        .collect();
    if err.chars().count() > MAX_REFUSAL {
        out.push('…');
    }
    out
}

/// Parses an answer body (an empty body is an empty answer, as Docker's
/// client takes it); a JSON `Err` that is not empty is a refusal.
pub fn parse_answer<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, Bad> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // Every answer is an object (serde would build one from an array).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Bad::Json("the plugin's answer is not a JSON object".into()));
    }
    // A refusal may come without the rest of the shape.
    if let Ok(Empty { err }) = serde_json::from_slice::<Empty>(body) {
        if !err.is_empty() {
            return Err(Bad::Refused(printable(&err)));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| Bad::Json(format!("the plugin answered bad JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_err_refuses() {
        let m: MountpointAnswer = parse_answer(br#"{"Mountpoint":"/x","Err":""}"#).unwrap();
        assert_eq!(m.mountpoint, "/x");
        let refused = parse_answer::<Empty>(br#"{"Err":"no such volume"}"#).unwrap_err();
        assert_eq!(refused, Bad::Refused("no such volume".into()));
        let hostile = format!(r#"{{"Err":"\u001b[31mred\n{}"}}"#, "x".repeat(5000));
        let Err(Bad::Refused(shown)) = parse_answer::<Empty>(hostile.as_bytes()) else {
            panic!("a refusal");
        };
        assert!(shown.starts_with(" [31mred ") && shown.chars().count() == MAX_REFUSAL + 1);
        let list: ListAnswer =
            parse_answer(br#"{"Volumes":[{"Name":"a","Mountpoint":"/a"},{"Name":"b"}]}"#).unwrap();
        assert_eq!(list.volumes.unwrap().len(), 2);
        assert!(parse_answer::<Empty>(b"").is_ok());
        assert!(matches!(
            parse_answer::<Empty>(b"not json"),
            Err(Bad::Json(_))
        ));
        let caps: CapabilitiesAnswer =
            parse_answer(br#"{"Capabilities":{"Scope":"global"}}"#).unwrap();
        assert_eq!(caps.capabilities.scope, "global");
    }

    #[test]
    fn requests_use_the_protocol_names() {
        let opts = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let create = serde_json::to_string(&CreateRequest {
            name: "v",
            opts: &opts,
        })
        .unwrap();
        assert_eq!(create, r#"{"Name":"v","Opts":{"a":"1"}}"#);
        let mount = serde_json::to_string(&MountRequest {
            name: "v",
            id: "c1",
        })
        .unwrap();
        assert_eq!(mount, r#"{"Name":"v","ID":"c1"}"#);
    }
}
