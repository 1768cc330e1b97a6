//! `docker manifest`-style look-ups without a pull (`GET
//! /distribution/{name}/json`): the descriptor of what a reference names
//! in its registry, and the platforms it offers: an index lists its
//! entries' platforms, a single manifest's platform comes from its config
//! (as dockerd reads it).

use oci_client::RegistryOperation;

use super::manifest::{self, Descriptor, DescriptorPlatform};
use super::pull::fetch_config;
use super::session::Session;
use super::{Credentials, RegistryConfig, RegistryError, RemoteReference, Target};
use crate::image::config::ImageConfig;

/// What a registry holds under a reference.
#[derive(Debug, Clone)]
pub struct DistributionInfo {
    /// The manifest or index itself (media type, digest, size).
    pub descriptor: Descriptor,
    pub platforms: Vec<DescriptorPlatform>,
}

/// Looks `reference` up in its registry.
pub async fn distribution_info(
    config: &RegistryConfig,
    reference: &RemoteReference,
    credentials: &Credentials,
) -> Result<DistributionInfo, RegistryError> {
    let session = Session::open(config, reference, credentials, RegistryOperation::Pull).await?;
    let target = match &reference.target {
        Target::Tag(t) => t.clone(),
        Target::Digest(d) => d.clone(),
    };
    // dockerd answers an unknown tag here in the registry's own words.
    let top = manifest::fetch(&session, &target).await?;
    let doc = top.parse()?;
    let platforms = if top.is_index(&doc) {
        doc.manifests
            .iter()
            .filter_map(|m| m.platform.clone())
            .collect()
    } else {
        let config_desc = doc
            .config
            .as_ref()
            .ok_or_else(|| RegistryError::Protocol("manifest has no config".into()))?;
        let bytes = fetch_config(&session, config_desc).await?;
        let image: ImageConfig = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Protocol(format!("invalid image config: {e}")))?;
        vec![DescriptorPlatform {
            architecture: image.architecture.clone(),
            os: image.os.clone(),
            variant: (image.extra.get("variant"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }]
    };
    let media_type = if doc.media_type.is_empty() {
        top.media_type.clone()
    } else {
        doc.media_type.clone()
    };
    Ok(DistributionInfo {
        descriptor: Descriptor {
            media_type,
            digest: top.digest.clone(),
            size: top.bytes.len() as i64,
            ..Default::default()
        },
        platforms,
    })
}
