//! Resource limits (`-m`, `--memory-swap`, `--cpus`, `--cpu-shares`,
//! `--cpuset-*`, `--pids-limit`, `--blkio-weight`, `--oom-kill-disable`),
//! `--ulimit`, `--oom-score-adj`, `--shm-size` and `--sysctl`: checked at
//! create with Docker's messages, written into the spec at start (the
//! runtime applies them through the container's cgroup and rlimits).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::OptionsError;

/// The HostConfig fields this module reads (the embedded `Resources`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    pub memory: i64,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: Option<i64>,
    pub blkio_weight: u16,
    pub ulimits: Option<Vec<Ulimit>>,
    pub oom_score_adj: i64,
    pub shm_size: i64,
    pub sysctls: Option<BTreeMap<String, String>>,
}

/// One `--ulimit name=soft:hard`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Docker's minimum memory limit.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// The CFS period `--cpus` is expressed in (Docker's).
const CPU_PERIOD: i64 = 100_000;
/// Docker's /dev/shm size.
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;
const ULIMITS: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];
/// Sysctls a container may set (they are namespaced): Docker's list.
const SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

impl Resources {
    /// Reads the fields from a HostConfig's JSON (`null` members already
    /// dropped by the caller).
    pub fn parse(host: &Map<String, Value>) -> Result<Self, OptionsError> {
        serde_json::from_value(Value::Object(host.clone()))
            .map_err(|e| OptionsError::Invalid(format!("invalid resource settings: {e}")))
    }

    /// Docker's checks at create.
    pub fn validate(&self, host_network: bool) -> Result<(), OptionsError> {
        let bad = |m: String| Err(OptionsError::Invalid(m));
        if self.memory != 0 && self.memory < MIN_MEMORY {
            return bad("Minimum memory limit allowed is 6MB".into());
        }
        if self.memory_reservation < 0 || (self.memory > 0 && self.memory_reservation > self.memory)
        {
            return bad(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
                    .into(),
            );
        }
        if self.cpu_shares < 0 {
            return bad(format!("invalid CPU shares: {}", self.cpu_shares));
        }
        if self.cpu_period != 0 && !(1000..=1_000_000).contains(&self.cpu_period) {
            return bad("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)".into());
        }
        if self.cpu_quota != 0 && self.cpu_quota != -1 && self.cpu_quota < 1000 {
            return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)".into());
        }
        if self.pids_limit.is_some_and(|l| l < -1) {
            return bad("invalid pids limit: use -1 or 0 for no limit".into());
        }
        if self.memory > 0 && self.memory_swap > 0 && self.memory_swap < self.memory {
            return bad(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            );
        }
        if self.memory_swap > 0 && self.memory == 0 {
            return bad(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into(),
            );
        }
        if let Some(s) = self
            .memory_swappiness
            .filter(|s| *s != -1 && !(0..=100).contains(s))
        {
            return bad(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
        if self.nano_cpus > 0 && (self.cpu_period > 0 || self.cpu_quota > 0) {
            return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
        if self.nano_cpus < 0 || self.nano_cpus > cpus * 1_000_000_000 {
            return bad(format!(
                "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
            ));
        }
        if self.blkio_weight > 0 && !(10..=1000).contains(&self.blkio_weight) {
            return bad("Range of blkio weight is from 10 to 1000".into());
        }
        if !(-1000..=1000).contains(&self.oom_score_adj) {
            return bad(format!(
                "Invalid value {}, range for oom score adj is [-1000, 1000]",
                self.oom_score_adj
            ));
        }
        if self.shm_size < 0 {
            return bad("SHM size can not be less than 0".into());
        }
        check_cpuset("cpus", "CPUs", &self.cpuset_cpus, &available_cpuset("cpus"))?;
        check_cpuset(
            "mems",
            "memory nodes",
            &self.cpuset_mems,
            &available_cpuset("mems"),
        )?;
        for u in self.ulimits.iter().flatten() {
            check_ulimit(u)?;
        }
        for key in self.sysctls.iter().flatten().map(|(k, _)| k) {
            check_sysctl(key, host_network)?;
        }
        Ok(())
    }

    /// The spec's `linux.resources` (devices added by the caller).
    pub fn spec_resources(&self) -> Map<String, Value> {
        let mut out = Map::new();
        let mut memory = Map::new();
        if self.memory > 0 {
            memory.insert("limit".into(), json!(self.memory));
            // Docker's default swap is twice the limit (saturating: a limit
            // near i64::MAX must not overflow).
            let swap = match self.memory_swap {
                0 => self.memory.saturating_mul(2),
                s => s,
            };
            memory.insert("swap".into(), json!(swap));
        }
        if self.memory_reservation > 0 {
            memory.insert("reservation".into(), json!(self.memory_reservation));
        }
        if let Some(s) = self.memory_swappiness.filter(|s| *s >= 0) {
            memory.insert("swappiness".into(), json!(s));
        }
        if self.oom_kill_disable == Some(true) {
            memory.insert("disableOOMKiller".into(), json!(true));
        }
        insert_if(&mut out, "memory", memory);
        insert_if(&mut out, "cpu", self.cpu());
        if let Some(limit) = self.pids_limit.filter(|l| *l > 0) {
            out.insert("pids".into(), json!({"limit": limit}));
        }
        if self.blkio_weight > 0 {
            out.insert("blockIO".into(), json!({"weight": self.blkio_weight}));
        }
        out
    }

    fn cpu(&self) -> Map<String, Value> {
        let mut cpu = Map::new();
        if self.cpu_shares > 0 {
            cpu.insert("shares".into(), json!(self.cpu_shares));
        }
        if self.nano_cpus > 0 {
            cpu.insert("period".into(), json!(CPU_PERIOD));
            cpu.insert(
                "quota".into(),
                json!(self.nano_cpus * CPU_PERIOD / 1_000_000_000),
            );
        }
        if self.cpu_period > 0 {
            cpu.insert("period".into(), json!(self.cpu_period));
        }
        if self.cpu_quota != 0 {
            cpu.insert("quota".into(), json!(self.cpu_quota));
        }
        if !self.cpuset_cpus.is_empty() {
            cpu.insert("cpus".into(), json!(self.cpuset_cpus));
        }
        if !self.cpuset_mems.is_empty() {
            cpu.insert("mems".into(), json!(self.cpuset_mems));
        }
        cpu
    }

    /// The spec's `process.rlimits`.
    pub fn rlimits(&self) -> Vec<Value> {
        self.ulimits
            .iter()
            .flatten()
            .map(|u| json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": rlimit(u.soft), "hard": rlimit(u.hard)}))
            .collect()
    }

    /// The /dev/shm size in bytes.
    pub fn shm_bytes(&self) -> i64 {
        if self.shm_size > 0 {
            self.shm_size
        } else {
            DEFAULT_SHM_SIZE
        }
    }
}

/// A negative ulimit value is "unlimited", as Docker reads it.
fn rlimit(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn insert_if(out: &mut Map<String, Value>, key: &str, section: Map<String, Value>) {
    if !section.is_empty() {
        out.insert(key.into(), Value::Object(section));
    }
}

pub(super) fn check_ulimit(u: &Ulimit) -> Result<(), OptionsError> {
    if !ULIMITS.contains(&u.name.as_str()) {
        return Err(OptionsError::Invalid(format!(
            "invalid ulimit type: {}",
            u.name
        )));
    }
    if u.hard >= 0 && (u.soft < 0 || u.soft > u.hard) {
        return Err(OptionsError::Invalid(format!(
            "ulimit soft limit must be less than or equal to hard limit: {} > {}",
            u.soft, u.hard
        )));
    }
    if u.name == "nofile" {
        check_nofile(u.soft.max(u.hard), u.soft < 0 || u.hard < 0)?;
    }
    Ok(())
}

/// Open files cannot be unlimited nor above the kernel's `fs.nr_open`:
/// the container's start would fail with a bare EPERM.
fn check_nofile(highest: i64, unlimited: bool) -> Result<(), OptionsError> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok());
    let Some(nr_open) = nr_open else {
        return Ok(());
    };
    if unlimited || highest > nr_open {
        return Err(OptionsError::Invalid(format!(
            "ulimit nofile cannot be {}: the kernel allows at most {nr_open} open files (fs.nr_open)",
            if unlimited { "unlimited".to_string() } else { highest.to_string() }
        )));
    }
    Ok(())
}

/// Namespaced sysctls only (Docker's `ValidateSysctl`); `net.*` needs the
/// container's own network namespace.
fn check_sysctl(key: &str, host_network: bool) -> Result<(), OptionsError> {
    // The runtime writes /proc/sys/<key with dots as slashes>: a key that
    // could name another path is no sysctl.
    if key.is_empty() || key.contains('/') || key.split('.').any(str::is_empty) {
        return Err(OptionsError::Invalid(format!(
            "invalid sysctl name {key:?}"
        )));
    }
    let namespaced = SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.");
    if namespaced {
        return Ok(());
    }
    if key.starts_with("net.") {
        if host_network {
            return Err(OptionsError::Invalid(format!(
                "sysctl {key:?} not allowed in host network namespace"
            )));
        }
        return Ok(());
    }
    Err(OptionsError::Invalid(format!(
        "sysctl '{key}' is not whitelisted"
    )))
}

/// The CPUs (`cpus`) or memory nodes (`mems`) containers may use: those
/// of the root cgroup, or what the host has online.
fn available_cpuset(kind: &str) -> String {
    let cgroup = format!("/sys/fs/cgroup/cpuset.{kind}.effective");
    let online = match kind {
        "cpus" => "/sys/devices/system/cpu/online",
        _ => "/sys/devices/system/node/online",
    };
    [cgroup.as_str(), online]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".into())
}

/// `--cpuset-cpus`/`--cpuset-mems` at create, with Docker's words: a
/// list that does not parse, or names what the host does not have.
fn check_cpuset(
    kind: &str,
    what: &str,
    requested: &str,
    available: &str,
) -> Result<(), OptionsError> {
    if requested.is_empty() {
        return Ok(());
    }
    let wanted = parse_uint_list(requested).ok_or_else(|| {
        OptionsError::Invalid(format!(
            "Invalid value {requested} for cpuset {kind}: invalid format: {requested}"
        ))
    })?;
    let have = parse_uint_list(available).unwrap_or_default();
    if wanted.is_subset(&have) {
        return Ok(());
    }
    Err(OptionsError::Invalid(format!(
        "Requested {what} are not available - requested {requested}, available: {available}"
    )))
}

/// A cpuset list (`0-3,7`) as a set; `None` when malformed or naming more
/// than 8192 entries (Docker's limit).
pub fn parse_uint_list(list: &str) -> Option<std::collections::BTreeSet<u32>> {
    const MAX: u32 = 8192;
    let mut out = std::collections::BTreeSet::new();
    for item in list.split(',') {
        let (low, high) = match item.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = item.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if low > high || high >= MAX {
            return None;
        }
        out.extend(low..=high);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuset_lists_parse_as_docker_reads_them() {
        let set = |v: &[u32]| {
            v.iter()
                .copied()
                .collect::<std::collections::BTreeSet<u32>>()
        };
        assert_eq!(parse_uint_list("0-2,5"), Some(set(&[0, 1, 2, 5])));
        assert_eq!(parse_uint_list("3"), Some(set(&[3])));
        for bad in ["", "1-", "-1", "a", "1,,2", "3-1", "9000", "1-9000"] {
            assert_eq!(parse_uint_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cpusets_are_checked_against_what_is_available() {
        assert!(check_cpuset("cpus", "CPUs", "0-1", "0-3").is_ok());
        assert!(check_cpuset("cpus", "CPUs", "", "0").is_ok());
        assert_eq!(
            check_cpuset("cpus", "CPUs", "99", "0-1")
                .unwrap_err()
                .to_string(),
            "Requested CPUs are not available - requested 99, available: 0-1"
        );
        assert_eq!(
            check_cpuset("mems", "memory nodes", "x", "0")
                .unwrap_err()
                .to_string(),
            "Invalid value x for cpuset mems: invalid format: x"
        );
    }

    fn parse(v: Value) -> Resources {
        Resources::parse(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn limits_become_spec_resources() {
        let r = parse(
            json!({"Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 20, "CpuShares": 512}),
        );
        r.validate(false).unwrap();
        let spec = r.spec_resources();
        assert_eq!(spec["memory"]["limit"], 64 << 20);
        assert_eq!(spec["memory"]["swap"], 128 << 20);
        assert_eq!(spec["cpu"]["quota"], 50_000);
        assert_eq!(spec["cpu"]["period"], 100_000);
        assert_eq!(spec["pids"]["limit"], 20);
        assert!(parse(json!({"PidsLimit": 0, "MemorySwappiness": -1}))
            .spec_resources()
            .is_empty());
    }

    #[test]
    fn bad_values_get_dockers_messages() {
        let cases = [
            (
                json!({"Memory": 1024}),
                "Minimum memory limit allowed is 6MB",
            ),
            (
                json!({"Memory": 64 << 20, "MemorySwap": 32 << 20}),
                "Minimum memoryswap limit",
            ),
            (
                json!({"NanoCpus": 1, "CpuPeriod": 1000}),
                "Conflicting options",
            ),
            (json!({"OomScoreAdj": 5000}), "range for oom score adj"),
            (
                json!({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}),
                "invalid ulimit type: bogus",
            ),
            (
                json!({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}),
                "soft limit must be less",
            ),
            (
                json!({"Sysctls": {"kernel.hostname": "x"}}),
                "is not whitelisted",
            ),
            (json!({"BlkioWeight": 5}), "blkio weight"),
            (json!({"Memory": -5}), "Minimum memory limit allowed is 6MB"),
            (json!({"CpuShares": -1}), "invalid CPU shares"),
            (json!({"CpuQuota": -5}), "CPU cfs quota"),
            (json!({"CpuPeriod": 1u64 << 40}), "CPU cfs period"),
            (
                json!({"Memory": 64 << 20, "MemoryReservation": 128 << 20}),
                "reservation",
            ),
        ];
        for (input, message) in cases {
            let err = parse(input.clone())
                .validate(false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{input}: {err}");
        }
        let err = parse(json!({"Sysctls": {"net.ipv4.ip_forward": "1"}}))
            .validate(true)
            .unwrap_err();
        assert!(err.to_string().contains("host network"));
        assert!(Resources::parse(json!({"Memory": "lots"}).as_object().unwrap()).is_err());
        let huge = parse(json!({"Memory": i64::MAX / 2 + 1}));
        assert_eq!(huge.spec_resources()["memory"]["swap"], i64::MAX);
    }

    #[test]
    fn ulimits_become_rlimits() {
        let r = parse(json!({"Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}]}));
        assert_eq!(
            r.rlimits(),
            vec![json!({"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200})]
        );
    }
}
