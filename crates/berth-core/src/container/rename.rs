//! `docker rename`: a new name in the name index (the database's UNIQUE
//! name decides between two renames racing for one name), and the
//! `rename` event with the old name. Checks and words as moby's
//! `daemon/rename.go`. DNS names on user networks follow at the next start.

use super::{names, ContainerError, ContainerService};

impl ContainerService {
    /// Renames a container (running or not).
    pub fn rename(&self, name_or_id: &str, new_name: &str) -> Result<(), ContainerError> {
        if name_or_id.is_empty() || new_name.is_empty() {
            return Err(ContainerError::InvalidConfig(
                "Neither old nor new names may be empty".into(),
            ));
        }
        let wanted = names::normalize(new_name)?;
        let id = self.resolve(name_or_id)?.id;
        let _guard = self.locks.lock(&id);
        let record = self.resolve(&id)?;
        if record.name == wanted {
            return Err(ContainerError::InvalidConfig(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        let taken = |other: String| ContainerError::NameInUse {
            name: wanted.clone(),
            id: other,
        };
        if let Some(other) = self.store.container_by_name(&wanted)? {
            return Err(taken(other.id));
        }
        match self.store.rename_container(&id, &wanted) {
            Ok(_) => {}
            Err(e) => {
                // A rename or create that took the name in between.
                return match self.store.container_by_name(&wanted)? {
                    Some(other) => Err(taken(other.id)),
                    None => Err(e.into()),
                };
            }
        }
        let old_name = format!("/{}", record.name);
        let mut renamed = record.clone();
        renamed.name = wanted;
        self.publish("rename", &renamed, &[("oldName", &old_name)]);
        Ok(())
    }
}
