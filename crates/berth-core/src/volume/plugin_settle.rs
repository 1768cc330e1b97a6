//! Plugin volumes whose create or remove a crash cut short. Start-up
//! reconciliation leaves plugin rows alone (the plugin may start after
//! berth), so these are settled later, on a thread of their own, once the
//! plugin answers its `List`:
//! - a *creating* row whose volume the plugin has is made ready (the
//!   plugin's Create may have run; removing the volume could destroy data
//!   it held before, since a plugin's Create of an existing name succeeds);
//! - a *removing* row whose volume the plugin still has is removed again
//!   (the user asked for it), then the row goes;
//! - a row whose volume the plugin does not have goes.
//!
//! A plugin that does not answer is asked again, with back-off; its rows
//! stay hidden meanwhile (start-up's findings name them).

use std::sync::Arc;
use std::time::Duration;

use super::VolumeService;
use crate::driver::VolumeDriver;
use crate::store::{VolumeRecord, VolumeState};

/// First wait before asking again a plugin that did not answer.
const FIRST_RETRY: Duration = Duration::from_secs(10);
/// Longest wait between two attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(600);

/// How one row was settled, if it was.
#[derive(Debug, PartialEq)]
enum Settled {
    MadeReady,
    Removed,
    /// The row changed meanwhile (nothing of this crash left to settle).
    Moved,
}

impl VolumeService {
    /// Start-up: settles the plugin rows a crash left creating or
    /// removing, on a thread of its own (see the module docs).
    pub fn settle_plugin_rows_later(self: &Arc<Self>) {
        let Ok(rows) = self.store.list_volumes() else {
            return;
        };
        let unsettled: Vec<VolumeRecord> = (rows.into_iter())
            .filter(|r| r.state != VolumeState::Ready && self.drivers.builtin(&r.driver).is_none())
            .collect();
        if unsettled.is_empty() || self.drivers.plugins().is_none() {
            return;
        }
        let service = self.clone();
        std::thread::spawn(move || service.settle_plugin_rows(unsettled));
    }

    fn settle_plugin_rows(&self, mut rows: Vec<VolumeRecord>) {
        let mut wait = FIRST_RETRY;
        loop {
            rows.retain(|row| match self.settle_plugin_row(row) {
                Ok(how) => {
                    tracing::warn!(volume = %row.name, plugin = %row.driver, state = ?row.state, ?how,
                        "settled a plugin volume's operation a crash cut short");
                    false
                }
                Err(why) => {
                    tracing::info!(volume = %row.name, plugin = %row.driver, %why,
                        "a plugin volume's cut-short operation waits for its plugin");
                    true
                }
            });
            if rows.is_empty() {
                return;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }

    /// Settles one row once its plugin lists its volumes.
    fn settle_plugin_row(&self, row: &VolumeRecord) -> Result<Settled, String> {
        let plugins = self.drivers.plugins().ok_or("no plugins")?;
        let plugin = plugins.get(&row.driver).map_err(|e| e.to_string())?;
        let listed = plugin
            .list_names(super::PLUGIN_LIST_WAIT)
            .map_err(|e| e.to_string())?;
        let name = row.name.as_str();
        let _guard = self.locks.lock(name);
        match self.store.get_volume(name) {
            Ok(Some(now)) if now.uid == row.uid && now.state == row.state => {}
            Ok(_) => return Ok(Settled::Moved),
            Err(e) => return Err(e.to_string()),
        }
        let has = listed.iter().any(|n| n == name);
        let store_err = |e: crate::store::StoreError| e.to_string();
        match (row.state, has) {
            (VolumeState::Creating, true) => {
                self.store
                    .set_volume_state(name, VolumeState::Ready)
                    .map_err(store_err)?;
                self.store.show_volume(name);
                return Ok(Settled::MadeReady);
            }
            (VolumeState::Removing, true) => {
                plugin.remove(name).map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        self.store.purge_volume(name).map_err(store_err)?;
        Ok(Settled::Removed)
    }
}
