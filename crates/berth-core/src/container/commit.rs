//! `docker commit`: a container's changes as a new image. The run config
//! is the request's (or else the container's), with `--change` lines
//! applied and, for a request's own config, the container's filling what
//! it leaves empty (moby's `daemon/commit.go`, the same merge as a
//! create's with the image). The layer holds what `docker diff` lists
//! ([`super::changes`]): changed paths as they are, deletions as `.wh.`
//! whiteouts, as moby's full comparison exports them; no change, no
//! layer. A running container is frozen while its folder is read unless
//! `pause=false`.

use serde_json::Value;

use super::cgroup::ContainerCgroup;
use super::{ContainerConfig, ContainerError, ContainerRecord, ContainerService, Status};
use crate::image::commit::CommitImage;
use crate::image::config::{ImageConfig, RunConfig};
use crate::image::Reference;
use crate::store::ImageRecord;

/// A commit request (`POST /commit`).
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub reference: Option<Reference>,
    pub comment: Option<String>,
    pub author: Option<String>,
    pub pause: bool,
    /// `--change` lines (Dockerfile instructions).
    pub changes: Vec<String>,
    /// The request body's config, when it sent one.
    pub config: Option<ContainerConfig>,
}

impl ContainerService {
    /// Commits a container; returns the new image.
    pub fn commit(
        &self,
        name_or_id: &str,
        req: CommitRequest,
    ) -> Result<ImageRecord, ContainerError> {
        let id = self.resolve(name_or_id)?.id;
        // No start, stop, pause or remove while the folder is read.
        let _guard = self.locks.lock(&id);
        let record = self.usable_for_image_work(&id)?;
        let container_config = to_json(&record.config)?;
        let run_config = commit_config(&record, &req)?;
        let image = CommitImage {
            parent_id: record.image_id.clone(),
            config: run_config,
            container_id: record.id.clone(),
            container_config,
            author: req.author.clone(),
            comment: req.comment.clone(),
            created_by: record.config.cmd.clone().unwrap_or_default().join(" "),
            reference: req.reference.clone(),
        };
        let frozen = if req.pause {
            self.freeze_for_commit(&record)?
        } else {
            None
        };
        let upper = self.paths(&record.id).upper();
        let result = self.diff(&record).and_then(|found| {
            let entries = super::changes::diff_entries(&found);
            let layer = self.images.commit(image, |file| {
                crate::archive::write_changes(&upper, &entries, file)
            })?;
            Ok(layer)
        });
        drop(frozen);
        let image = result?;
        self.publish("commit", &record, &[]);
        Ok(image)
    }

    /// Freezes a running container that is not paused, until the guard
    /// it returns drops (also on a panic or an error).
    fn freeze_for_commit(
        &self,
        record: &ContainerRecord,
    ) -> Result<Option<Frozen>, ContainerError> {
        if record.state.status != Status::Running || record.state.paused {
            return Ok(None);
        }
        let frozen = Frozen(record.id.clone());
        ContainerCgroup::of(&record.id).freeze(true).map_err(|e| {
            ContainerError::Start(format!("cannot pause container {}: {e}", record.id))
        })?;
        Ok(Some(frozen))
    }
}

/// A container frozen for a commit; thawed on drop.
struct Frozen(String);

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = ContainerCgroup::of(&self.0).freeze(false) {
            tracing::error!(container = %self.0, error = %e, "could not thaw the container after its commit");
        }
    }
}

/// The new image's run config: the request's config or the container's,
/// the change lines applied, then the container's filling what a
/// request's own config left empty.
fn commit_config(
    record: &ContainerRecord,
    req: &CommitRequest,
) -> Result<RunConfig, ContainerError> {
    let container: RunConfig = from_json(to_json(&record.config)?)?;
    let base: RunConfig = match &req.config {
        Some(own) => from_json(to_json(own)?)?,
        None => container.clone(),
    };
    let changed = crate::image::changes::apply(&base, &req.changes)?;
    if req.config.is_none() {
        return Ok(changed);
    }
    let own: ContainerConfig = from_json(to_json(&changed)?)?;
    let image = ImageConfig {
        config: container,
        ..Default::default()
    };
    from_json(to_json(&super::create::merge(own, &image))?)
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, ContainerError> {
    serde_json::to_value(value).map_err(|e| ContainerError::InvalidConfig(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ContainerError> {
    serde_json::from_value(value).map_err(|e| ContainerError::InvalidConfig(e.to_string()))
}
