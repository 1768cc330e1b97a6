//! Docker volume plugins used as berth drivers: found by name
//! ([`discovery`]), activated at first use, then called over their HTTP
//! protocol ([`protocol`], [`http`]) for every driver operation, each
//! call under Docker's timeouts (2 minutes for Create and Mount, 1 minute
//! otherwise) and on a connection of its own. No lock is held across a
//! call: a hung plugin holds only the name lock of the volume it was
//! called for. Plugins keep no labels or options: berth's database does.

mod answer;
mod discovery;
mod http;
mod protocol;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

pub use discovery::PluginDirs;
use http::{Addr, CallError};

use super::{Capabilities, DriverError, DriverOptions, DriverVolume, Scope, VolumeDriver};

/// How long calls may take, and how long activation retries a plugin
/// that does not listen yet.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub dirs: PluginDirs,
    /// Create and Mount (Docker: 2 minutes).
    pub long_timeout: Duration,
    /// Every other call (Docker: 1 minute).
    pub short_timeout: Duration,
    /// Activation retries a refused connection this long (Docker: 30 s).
    pub activation_retry: Duration,
    /// Folders no Mountpoint may be at or under (berth's root: a plugin
    /// must not hand a container berth's database or other volumes).
    pub forbidden: Vec<PathBuf>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            dirs: PluginDirs::default(),
            long_timeout: Duration::from_secs(120),
            short_timeout: Duration::from_secs(60),
            activation_retry: Duration::from_secs(30),
            forbidden: Vec::new(),
        }
    }
}

/// How long a failed activation is remembered: uses meanwhile fail at
/// once instead of each waiting out the activation window again.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

/// An activation that failed: when, why, and the socket it tried (a new
/// socket, the plugin restarted, is tried again at once).
#[derive(Debug, Clone)]
struct Failed {
    at: Instant,
    why: String,
    socket: Option<(u64, u64, i64, i64)>,
}

/// The identity of a unix socket address: device, inode and change time
/// (an inode number is soon reused for a new socket of the same name).
fn socket_identity(addr: &Addr) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    match addr {
        Addr::Unix(path) => {
            (std::fs::metadata(path).ok()).map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
        }
        Addr::Tcp(_) => None,
    }
}

/// The plugins berth has activated, by name.
#[derive(Debug, Default)]
pub struct Plugins {
    settings: PluginSettings,
    active: Mutex<HashMap<String, Arc<PluginDriver>>>,
    /// Activations that failed lately.
    failed: Mutex<HashMap<String, Failed>>,
}

impl Plugins {
    pub fn new(settings: PluginSettings) -> Self {
        Plugins {
            settings,
            active: Mutex::default(),
            failed: Mutex::default(),
        }
    }

    /// Plugin `name` as a driver: found and activated at first use (the
    /// table's lock is not held meanwhile). Unknown: `UnknownDriver`.
    pub fn get(&self, name: &str) -> Result<Arc<PluginDriver>, DriverError> {
        let active = self.active_one(name);
        let found = discovery::find(&self.settings.dirs, name);
        match (&active, &found) {
            // Moved (a new socket path or spec): activated again there.
            (Some(driver), Ok(Some(addr))) if *addr != driver.addr => {}
            // Where it was, or gone for now (it may come back).
            (Some(driver), _) => return Ok(driver.clone()),
            (None, _) => {}
        }
        let addr = found
            .map_err(|why| plugin_error(name, "discovery", why))?
            .ok_or_else(|| DriverError::UnknownDriver(name.to_string()))?;
        if let Some(failed) = self.failed_lately(name, &addr) {
            let ago = failed.at.elapsed().as_secs();
            let why = format!("{} (activation failed {ago} s ago)", failed.why);
            return Err(plugin_error(name, "Plugin.Activate", why));
        }
        let socket = socket_identity(&addr);
        let driver = match PluginDriver::activate(name, addr, &self.settings) {
            Ok(driver) => Arc::new(driver),
            Err(e) => {
                let why = match &e {
                    DriverError::Plugin { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                let failed = Failed {
                    at: Instant::now(),
                    why,
                    socket,
                };
                self.failed.lock().insert(name.to_string(), failed);
                return Err(e);
            }
        };
        self.failed.lock().remove(name);
        let mut active = self.active.lock();
        match active.get(name) {
            // Another caller activated it at the same address meanwhile.
            Some(other) if other.addr == driver.addr => Ok(other.clone()),
            _ => {
                active.insert(name.to_string(), driver.clone());
                Ok(driver)
            }
        }
    }

    /// Plugin `name`, activated now if it is not yet, without waiting for
    /// one that does not listen (a single attempt; `volume ls` asks).
    pub fn get_quick(&self, name: &str) -> Result<Arc<PluginDriver>, DriverError> {
        if let Some(found) = self.active_one(name) {
            return Ok(found);
        }
        let quick = Plugins::new(PluginSettings {
            activation_retry: Duration::ZERO,
            ..self.settings.clone()
        });
        *quick.failed.lock() = self.failed.lock().clone();
        let driver = quick.get(name).inspect_err(|_| {
            if let Some(failed) = quick.failed.lock().get(name) {
                self.failed.lock().insert(name.to_string(), failed.clone());
            }
        })?;
        let mut active = self.active.lock();
        Ok(active.entry(name.to_string()).or_insert(driver).clone())
    }

    /// The failure of plugin `name`'s last activation, if it is recent and
    /// its socket is the same one.
    fn failed_lately(&self, name: &str, addr: &Addr) -> Option<Failed> {
        let failed = self.failed.lock().get(name).cloned()?;
        let same = failed.socket == socket_identity(addr);
        (same && failed.at.elapsed() < FAILURE_MEMORY).then_some(failed)
    }

    /// Plugin `name` if it is activated already (no discovery, no call).
    pub fn active_one(&self, name: &str) -> Option<Arc<PluginDriver>> {
        self.active.lock().get(name).cloned()
    }

    /// Every plugin berth knows: found in the folders, or activated (one
    /// whose socket went away stays known while it is active).
    pub fn known(&self) -> Vec<KnownPlugin> {
        let active = self.active.lock().clone();
        let mut names: std::collections::BTreeSet<String> =
            discovery::all_names(&self.settings.dirs)
                .into_iter()
                .collect();
        names.extend(active.keys().cloned());
        names
            .into_iter()
            .map(|name| KnownPlugin {
                active: active.contains_key(&name),
                address: (discovery::find(&self.settings.dirs, &name).ok().flatten())
                    .or_else(|| active.get(&name).map(|p| p.addr.clone()))
                    .map(|a| a.to_string()),
                name,
            })
            .collect()
    }

    /// The plugins activated so far.
    pub fn active(&self) -> Vec<Arc<PluginDriver>> {
        self.active.lock().values().cloned().collect()
    }
}

/// Why a call failed: the plugin refused (its `Err`), or there was no
/// good answer (unreachable, timed out, malformed).
#[derive(Debug)]
enum Failure {
    Refused(String),
    NoAnswer(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Failure::Refused(m) | Failure::NoAnswer(m) => m,
        }
    }
}

/// A plugin as `GET /plugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPlugin {
    pub name: String,
    /// `unix:///…` or `tcp://…`; `None` when it is gone.
    pub address: Option<String>,
    /// Activated by a use since the daemon started.
    pub active: bool,
}

impl KnownPlugin {
    /// A stable 64-hex id (SHA-256 of the name): legacy plugins have none.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.name.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn plugin_error(plugin: &str, call: &str, message: impl Into<String>) -> DriverError {
    DriverError::Plugin {
        plugin: plugin.to_string(),
        call: call.to_string(),
        message: message.into(),
    }
}

/// One activated volume plugin.
#[derive(Debug)]
pub struct PluginDriver {
    name: String,
    addr: Addr,
    settings: PluginSettings,
    scope: Scope,
    /// Mount points the plugin reported, for `volume ls` (which must not
    /// call the plugin once per volume).
    mountpoints: Mutex<HashMap<String, PathBuf>>,
}

impl PluginDriver {
    /// Activates the plugin at `addr` (retrying a refused connection for
    /// the activation window) and asks its scope.
    fn activate(name: &str, addr: Addr, settings: &PluginSettings) -> Result<Self, DriverError> {
        let mut driver = PluginDriver {
            name: name.to_string(),
            addr,
            settings: settings.clone(),
            scope: Scope::Local,
            mountpoints: Mutex::default(),
        };
        let activation: protocol::Activation = (driver.call_retrying("Plugin.Activate"))
            .map_err(|f| plugin_error(name, "Plugin.Activate", f.message()))?;
        if !activation.implements.iter().any(|i| i == "VolumeDriver") {
            let what = activation.implements.join(", ");
            return Err(plugin_error(
                name,
                "Plugin.Activate",
                format!("implements [{what}], not VolumeDriver"),
            ));
        }
        // Older plugins have no Capabilities: local scope, as Docker says.
        let caps = driver.try_call::<_, protocol::CapabilitiesAnswer>(
            "VolumeDriver.Capabilities",
            &serde_json::json!({}),
            false,
        );
        if caps.is_ok_and(|c| c.capabilities.scope.eq_ignore_ascii_case("global")) {
            driver.scope = Scope::Global;
        }
        tracing::info!(plugin = %name, addr = ?driver.addr, scope = driver.scope.as_str(), "volume plugin activated");
        Ok(driver)
    }

    fn call_retrying<T>(&self, method: &str) -> Result<T, Failure>
    where
        T: for<'de> serde::Deserialize<'de> + Default,
    {
        let until = Instant::now() + self.settings.activation_retry;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.post(method, b"{}", false) {
                Err(CallError::Unreachable(e)) if Instant::now() < until => {
                    tracing::debug!(plugin = %self.name, error = %e, "plugin not listening yet");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                result => return Self::answer(result),
            }
        }
    }

    fn post(&self, method: &str, body: &[u8], long: bool) -> Result<(u16, Vec<u8>), CallError> {
        let timeout = match long {
            true => self.settings.long_timeout,
            false => self.settings.short_timeout,
        };
        self.post_within(method, body, timeout)
    }

    fn post_within(
        &self,
        method: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), CallError> {
        http::post(&self.addr, &format!("/{method}"), body, timeout)
    }

    /// The names the plugin's `List` gives within `timeout` (for `volume
    /// ls`, which must not wait long on a plugin).
    pub fn list_names(&self, timeout: Duration) -> Result<Vec<String>, DriverError> {
        let method = "VolumeDriver.List";
        let result = self.post_within(method, b"{}", timeout.min(self.settings.short_timeout));
        Self::answer::<protocol::ListAnswer>(result)
            .map(|list| {
                list.volumes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v.name)
                    .collect()
            })
            .map_err(|f| plugin_error(&self.name, method, f.message()))
    }

    fn answer<T>(result: Result<(u16, Vec<u8>), CallError>) -> Result<T, Failure>
    where
        T: for<'de> serde::Deserialize<'de> + Default,
    {
        let (status, body) = result.map_err(|e| Failure::NoAnswer(e.to_string()))?;
        match (status, protocol::parse_answer::<T>(&body)) {
            (_, Err(protocol::Bad::Refused(e))) => Err(Failure::Refused(e)),
            (_, Err(protocol::Bad::Json(e))) => Err(Failure::NoAnswer(e)),
            (200..=299, Ok(answer)) => Ok(answer),
            (status, Ok(_)) => Err(Failure::NoAnswer(format!("HTTP {status}"))),
        }
    }

    /// One call: `method` with `request`, under its timeout.
    fn try_call<R: Serialize, T>(&self, method: &str, request: &R, long: bool) -> Result<T, Failure>
    where
        T: for<'de> serde::Deserialize<'de> + Default,
    {
        let body = serde_json::to_vec(request).map_err(|e| Failure::NoAnswer(e.to_string()))?;
        Self::answer(self.post(method, &body, long))
    }

    /// [`Self::try_call`], failures worded with the plugin and the call.
    fn call<R: Serialize, T>(&self, method: &str, request: &R, long: bool) -> Result<T, DriverError>
    where
        T: for<'de> serde::Deserialize<'de> + Default,
    {
        self.try_call(method, request, long)
            .map_err(|f| plugin_error(&self.name, method, f.message()))
    }

    fn remember(&self, name: &str, mountpoint: &str) {
        if !mountpoint.is_empty() {
            self.mountpoints
                .lock()
                .insert(name.to_string(), PathBuf::from(mountpoint));
        }
    }

    /// A Mountpoint is bound into a container as it is: only an existing
    /// absolute folder (a relative one would be resolved against the
    /// daemon's working folder), not the host's root, and not in a
    /// forbidden folder (berth's root), wherever symlinks or `..` lead.
    fn check_mountpoint(&self, mountpoint: &str) -> Result<(), String> {
        let path = std::path::Path::new(mountpoint);
        if !path.is_absolute() || !path.is_dir() {
            return Err(format!(
                "Mountpoint {mountpoint:?} is not an existing absolute folder"
            ));
        }
        let real = (path.canonicalize()).map_err(|e| format!("Mountpoint {mountpoint:?}: {e}"))?;
        let inside = |root: &PathBuf| {
            let root = root.canonicalize().unwrap_or_else(|_| root.clone());
            real.starts_with(root)
        };
        if real == std::path::Path::new("/") || self.settings.forbidden.iter().any(inside) {
            return Err(format!(
                "Mountpoint {mountpoint:?} is the host's root or inside berth's own folders"
            ));
        }
        Ok(())
    }
}

impl VolumeDriver for PluginDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { scope: self.scope }
    }

    /// Options are the plugin's to judge, at Create.
    fn validate(&self, _options: &DriverOptions) -> Result<(), DriverError> {
        Ok(())
    }

    fn create(&self, name: &str, options: &DriverOptions) -> Result<bool, DriverError> {
        let request = protocol::CreateRequest {
            name,
            opts: options,
        };
        self.call::<_, protocol::Empty>("VolumeDriver.Create", &request, true)?;
        Ok(true)
    }

    fn remove(&self, name: &str) -> Result<bool, DriverError> {
        self.call::<_, protocol::Empty>(
            "VolumeDriver.Remove",
            &protocol::NameRequest { name },
            false,
        )?;
        self.mountpoints.lock().remove(name);
        Ok(true)
    }

    /// Whether the plugin has the volume (its `Get`), and where it is.
    fn path(&self, name: &str) -> Result<Option<PathBuf>, DriverError> {
        Ok(self.get(name)?.map(|v| v.mountpoint))
    }

    fn mount(
        &self,
        name: &str,
        _options: &DriverOptions,
        id: &str,
    ) -> Result<PathBuf, DriverError> {
        let request = protocol::MountRequest { name, id };
        let answer: protocol::MountpointAnswer = self.call("VolumeDriver.Mount", &request, true)?;
        // Refused, the ID is released by the caller's clean-up (the
        // volume service's unmount reaches the plugin's Unmount).
        if let Err(why) = self.check_mountpoint(&answer.mountpoint) {
            return Err(plugin_error(&self.name, "VolumeDriver.Mount", why));
        }
        self.remember(name, &answer.mountpoint);
        Ok(PathBuf::from(answer.mountpoint))
    }

    fn unmount(&self, name: &str, id: &str) -> Result<bool, DriverError> {
        let request = protocol::MountRequest { name, id };
        self.call::<_, protocol::Empty>("VolumeDriver.Unmount", &request, false)?;
        Ok(true)
    }

    fn get(&self, name: &str) -> Result<Option<DriverVolume>, DriverError> {
        let request = protocol::NameRequest { name };
        // A plugin says "no such volume" as an Err, in its own words.
        let volume =
            match self.try_call::<_, protocol::GetAnswer>("VolumeDriver.Get", &request, false) {
                Ok(a) => a.volume,
                Err(Failure::Refused(_)) => None,
                Err(f) => return Err(plugin_error(&self.name, "VolumeDriver.Get", f.message())),
            };
        Ok(volume.map(|v| {
            self.remember(name, &v.mountpoint);
            DriverVolume {
                name: name.to_string(),
                mountpoint: PathBuf::from(v.mountpoint),
                status: v.status,
            }
        }))
    }

    fn list(&self) -> Result<Vec<DriverVolume>, DriverError> {
        let answer: protocol::ListAnswer =
            self.call("VolumeDriver.List", &serde_json::json!({}), false)?;
        Ok(answer
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| DriverVolume {
                name: v.name,
                mountpoint: PathBuf::from(v.mountpoint),
                status: v.status,
            })
            .collect())
    }

    /// The last mount point the plugin reported; never a call.
    fn mountpoint(&self, name: &str) -> Option<PathBuf> {
        self.mountpoints.lock().get(name).cloned()
    }
}
