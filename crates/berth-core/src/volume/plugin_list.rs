//! What `volume ls` learns from the volume plugins: each plugin that has
//! volumes in berth's rows, or that is active, is asked for its `List`
//! (all at once, at most [`PLUGIN_LIST_WAIT`] in all), never once per
//! volume. A plugin not available, failing or slow is a warning (its
//! volumes are still listed, from the rows). A volume a plugin lists that
//! berth has no row for (made through another engine, or before berth
//! knew the plugin) is adopted as a row, as Docker lists it; a row whose
//! volume the plugin no longer lists is kept, with a warning (never
//! dropped silently: the plugin may be answering for part of its store).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{names, ListedVolume, VolumeError, VolumeService};
use crate::driver::plugin::Plugins;
use crate::driver::VolumeDriver;
use crate::error::some_of;
use crate::store::{VolumeRecord, VolumeState};

/// How long `volume ls` waits for the plugins' `List`.
pub const PLUGIN_LIST_WAIT: Duration = Duration::from_secs(5);
/// How long one `volume ls` spends adopting what the plugins list.
const ADOPT_WAIT: Duration = Duration::from_secs(1);
/// The most volumes one `volume ls` adopts.
const MAX_ADOPTED: usize = 1000;
/// Names a warning shows before "and N more".
const NAMED: usize = 10;

/// What the plugins said, for one `volume ls`.
#[derive(Debug, Default)]
pub struct PluginListing {
    pub warnings: Vec<String>,
    /// Volumes adopted from a plugin's `List` (list again to show them).
    pub adopted: Vec<String>,
}

/// One plugin's answer: the names it lists, or the warning about it.
type Answer = Result<Vec<String>, String>;

impl VolumeService {
    /// Asks the plugins behind `listed` (and every active one) for their
    /// `List`; see the module docs.
    pub fn check_plugins(&self, listed: &[ListedVolume]) -> PluginListing {
        let Some(plugins) = self.drivers.plugins() else {
            return PluginListing::default();
        };
        let mut rows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // Most rows share one driver: the registry is asked again only
        // when the driver differs from the previous row's (asked per row,
        // its hashing was an eighth of a list of 100,000 local volumes).
        let mut last: Option<(&str, bool)> = None;
        for volume in listed {
            let driver = volume.record.driver.as_str();
            let builtin = match last {
                Some((d, builtin)) if d == driver => builtin,
                _ => self.drivers.builtin(driver).is_some(),
            };
            last = Some((driver, builtin));
            if !builtin {
                let names = rows.entry(driver.to_string()).or_default();
                names.insert(volume.record.name.clone());
            }
        }
        for active in plugins.active() {
            rows.entry(active.name().to_string()).or_default();
        }
        let answers = ask_all(plugins, rows.keys().cloned().collect());
        // Adopting is a durable write each: bounded, the rest next time.
        let until = Instant::now() + ADOPT_WAIT;
        let mut out = PluginListing::default();
        for (plugin, in_rows) in &rows {
            match answers.get(plugin) {
                Some(Ok(names)) => self.compare(plugin, in_rows, names, until, &mut out),
                // Only asked for volumes it may have made elsewhere: a
                // plugin with none here that went away is no news.
                _ if in_rows.is_empty() => {}
                Some(Err(warning)) => out.warnings.push(warning.clone()),
                None => out.warnings.push(format!(
                    "volume plugin {plugin} did not answer List within {} s",
                    PLUGIN_LIST_WAIT.as_secs()
                )),
            }
        }
        out
    }

    /// Adopts what `plugin` lists that has no row; warns of rows it lacks.
    fn compare(
        &self,
        plugin: &str,
        in_rows: &BTreeSet<String>,
        listed: &[String],
        until: Instant,
        out: &mut PluginListing,
    ) {
        let listed: BTreeSet<&String> = listed.iter().collect();
        let new: Vec<&&String> = listed
            .iter()
            .filter(|n| !in_rows.contains(n.as_str()))
            .collect();
        let mut refused = Vec::new();
        for (done, name) in new.iter().enumerate() {
            if done >= MAX_ADOPTED || Instant::now() > until {
                out.warnings.push(format!(
                    "volume plugin {plugin} lists {} volumes berth does not show yet \
                     (the next lists add them)",
                    new.len() - done
                ));
                break;
            }
            match self.adopt_plugin_volume(plugin, name) {
                Ok(true) => out.adopted.push(name.to_string()),
                Ok(false) => {}
                Err(_) => refused.push(format!("{name:?}")),
            }
        }
        if !refused.is_empty() {
            out.warnings.push(format!(
                "volume plugin {plugin} lists {} names berth cannot show (not volume names, or names it cannot give a volume now): {}",
                refused.len(),
                some_of(&refused, NAMED)
            ));
        }
        let lost: Vec<String> = in_rows
            .iter()
            .filter(|n| !listed.contains(n))
            .cloned()
            .collect();
        if !lost.is_empty() {
            out.warnings.push(format!(
                "{} volumes of plugin {plugin} are not in its List (listed from berth's records): {}",
                lost.len(),
                some_of(&lost, NAMED)
            ));
        }
    }

    /// Records volume `name` of `plugin` as a ready row (no labels or
    /// options: the plugin keeps none). Returns whether a row was made: a
    /// name berth already has (of any driver, or filtered out of this
    /// list) is left alone.
    fn adopt_plugin_volume(&self, plugin: &str, name: &str) -> Result<bool, VolumeError> {
        names::validate_name(name)?;
        let _guard = self.locks.lock(name);
        if self.record("list", name)?.is_some() {
            return Ok(false);
        }
        let record = VolumeRecord {
            name: name.to_string(),
            uid: VolumeRecord::new_uid(),
            driver: plugin.to_string(),
            created_at: chrono::Utc::now().timestamp(),
            state: VolumeState::Ready,
            labels: Default::default(),
            options: Default::default(),
        };
        self.settle_name("list", name)?;
        self.store
            .insert_volume(&record)
            .map_err(|e| VolumeError::store("list", name, e))?;
        tracing::info!(volume = name, plugin, "adopted a volume its plugin lists");
        Ok(true)
    }
}

/// Asks each plugin in `names` on a thread of its own, waiting at most
/// [`PLUGIN_LIST_WAIT`] in all: a plugin that hangs is left out (its
/// thread ends with its call's own timeout).
fn ask_all(plugins: &Arc<Plugins>, names: Vec<String>) -> BTreeMap<String, Answer> {
    let (tx, rx) = std::sync::mpsc::channel();
    for name in &names {
        let (tx, plugins, name) = (tx.clone(), plugins.clone(), name.clone());
        std::thread::spawn(move || {
            let _ = tx.send((name.clone(), ask(&plugins, &name)));
        });
    }
    drop(tx);
    let deadline = Instant::now() + PLUGIN_LIST_WAIT;
    let mut answered = BTreeMap::new();
    while answered.len() < names.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, answer)) => answered.insert(name, answer),
            Err(_) => break,
        };
    }
    answered
}

fn ask(plugins: &Plugins, name: &str) -> Answer {
    match plugins.get_quick(name) {
        Err(e) => Err(format!(
            "volume plugin {name} is not available ({e}): its volumes are listed from berth's records"
        )),
        Ok(plugin) => plugin
            .list_names(PLUGIN_LIST_WAIT)
            .map_err(|e| e.to_string()),
    }
}
