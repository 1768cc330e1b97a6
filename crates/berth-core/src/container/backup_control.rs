//! What a backup needs of containers (`backup::ContainerControl`): their
//! names and labels, and stopping and starting the ones that use a local
//! volume for the time of its backup.

use std::sync::Arc;

use super::ContainerService;
use crate::backup::{ContainerControl, ContainerFacts};

/// The container service, as backups see it.
pub struct BackupContainers(pub Arc<ContainerService>);

impl ContainerControl for BackupContainers {
    fn facts(&self, id: &str) -> Option<ContainerFacts> {
        let record = self.0.resolve(id).ok()?;
        Some(ContainerFacts {
            id: record.id.clone(),
            name: record.name.trim_start_matches('/').to_string(),
            labels: record.config.labels.unwrap_or_default(),
        })
    }

    fn stop(&self, id: &str) -> Result<(), String> {
        self.0.stop(id, None, None).map_err(|e| e.to_string())
    }

    fn start(&self, id: &str) -> Result<(), String> {
        match self.0.start(id) {
            // Its user started it meanwhile: running is what was wanted.
            Ok(()) | Err(super::ContainerError::AlreadyRunning) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
