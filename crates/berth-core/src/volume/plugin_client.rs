//! Mounts held by another engine through berth's volume plugin (a Docker
//! engine that uses berth's drivers, `berth daemon --serve-volume-plugin`).
//! Its mount ids are the other engine's container IDs, kept under
//! [`PLUGIN_CLIENT_MOUNT_PREFIX`]: they are persisted and replayed at
//! start-up like berth's own containers' ids, but no berth container
//! owns them, so container recovery leaves them alone (only the other
//! engine's Unmount releases them).

/// The prefix of a mount id held by a plugin client.
pub const PLUGIN_CLIENT_MOUNT_PREFIX: &str = "plugin-client-";

/// Longest ID a plugin client may give (Docker's are 64 hex digits).
const MAX_CLIENT_ID: usize = 128;

/// The mount id for a plugin client's `id` (the `ID` of its Mount and
/// Unmount): a short plain token, since it is stored and shown in events.
pub fn plugin_client_mount_id(id: &str) -> Result<String, String> {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if id.is_empty() || id.len() > MAX_CLIENT_ID || !plain {
        return Err(format!(
            "invalid mount ID {id:?}: 1 to {MAX_CLIENT_ID} letters, digits, '_', '.' or '-'"
        ));
    }
    Ok(format!("{PLUGIN_CLIENT_MOUNT_PREFIX}{id}"))
}

/// Whether a mount id is held by a plugin client.
pub fn is_plugin_client_id(id: &str) -> bool {
    id.starts_with(PLUGIN_CLIENT_MOUNT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_plain_tokens() {
        let docker = "4f1c".repeat(16);
        let id = plugin_client_mount_id(&docker).unwrap();
        assert!(is_plugin_client_id(&id) && id.ends_with(&docker));
        for bad in ["", "../x", "a b", "a/b", &"x".repeat(129)] {
            assert!(plugin_client_mount_id(bad).is_err(), "{bad:?}");
        }
    }
}
