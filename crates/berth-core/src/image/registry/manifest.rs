//! Manifests and indexes (Docker schema 2 and OCI): the few fields a pull
//! reads, fetched with a size cap and checked against their digest.

use serde::{Deserialize, Serialize};

use super::session::Session;
use super::RegistryError;
use crate::image::layers::Compression;
use crate::image::platform::Platform;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// What a pull accepts, in order of preference.
pub const ACCEPTED: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
/// dockerd's cap on a manifest (`maxManifestBodySize`, 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// A cap on an image config (dockerd allows 8 MiB).
pub const MAX_CONFIG: u64 = 8 << 20;

/// A content descriptor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// A manifest or an index, as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManifestDoc {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: i64,
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A fetched manifest: its bytes, type and digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl Fetched {
    pub fn parse(&self) -> Result<ManifestDoc, RegistryError> {
        let doc: ManifestDoc = serde_json::from_slice(&self.bytes)
            .map_err(|e| RegistryError::Protocol(format!("invalid manifest: {e}")))?;
        if doc.schema_version == 1 {
            return Err(RegistryError::Protocol(
                "schema 1 manifests are not supported: push the image again with a newer client"
                    .into(),
            ));
        }
        Ok(doc)
    }

    /// Whether this is an index (a manifest list).
    pub fn is_index(&self, doc: &ManifestDoc) -> bool {
        let kind = if doc.media_type.is_empty() {
            &self.media_type
        } else {
            &doc.media_type
        };
        kind == OCI_INDEX
            || kind == DOCKER_LIST
            || (doc.config.is_none() && !doc.manifests.is_empty())
    }
}

/// Fetches `reference` (a tag or digest) of the session's repository.
pub async fn fetch(session: &Session, reference: &str) -> Result<Fetched, RegistryError> {
    let url = format!(
        "{}{}/manifests/{reference}",
        session.base_url(),
        session.path()
    );
    let response = session.get(&url, &ACCEPTED.join(", ")).await?;
    let media_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let bytes = super::session::read_capped(response, MAX_MANIFEST, "manifest").await?;
    let digest = crate::image::layers::digest(&bytes);
    if reference.starts_with("sha256:") && digest != reference {
        return Err(RegistryError::Verification(format!(
            "manifest verification failed for digest {reference}"
        )));
    }
    Ok(Fetched {
        bytes,
        media_type,
        digest,
    })
}

/// The entry of an index for `want`: the first whose platform matches
/// (Docker's order), or dockerd's error naming the platform.
pub fn choose<'a>(doc: &'a ManifestDoc, want: &Platform) -> Result<&'a Descriptor, RegistryError> {
    doc.manifests
        .iter()
        .filter(|d| d.media_type != OCI_INDEX && d.media_type != DOCKER_LIST)
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                Platform::of(&p.os, &p.architecture, &p.variant).is_some_and(|p| want.matches(&p))
            })
        })
        .ok_or_else(|| {
            let mut text = format!("{}/{}", want.os, want.architecture);
            if !want.variant.is_empty() {
                text.push('/');
                text.push_str(&want.variant);
            }
            RegistryError::NotFound(format!(
                "no matching manifest for {text} in the manifest list entries"
            ))
        })
}

/// The compression a layer media type names; `None` for types that are
/// not layers berth can unpack (foreign layers, encrypted layers).
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        DOCKER_LAYER | OCI_LAYER_GZIP => Some(Compression::Gzip),
        OCI_LAYER_ZSTD => Some(Compression::Zstd),
        OCI_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ManifestDoc {
        serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_matching_platform_is_chosen() {
        let doc = index();
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(choose(&doc, &amd).unwrap().digest, "sha256:b");
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(choose(&doc, &arm).unwrap().digest, "sha256:a");
        let s390 = Platform::parse("linux/s390x").unwrap();
        let err = choose(&doc, &s390).unwrap_err().to_string();
        assert!(
            err.contains("no matching manifest for linux/s390x"),
            "{err}"
        );
    }

    #[test]
    fn layer_types() {
        assert_eq!(layer_compression(DOCKER_LAYER), Some(Compression::Gzip));
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            None
        );
    }

    #[test]
    fn schema1_is_refused() {
        let fetched = Fetched {
            bytes: br#"{"schemaVersion":1}"#.to_vec(),
            media_type: String::new(),
            digest: String::new(),
        };
        assert!(fetched.parse().is_err());
    }
}
