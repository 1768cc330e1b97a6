//! `docker stats`: one sample of a running container's resource use, read
//! from its cgroup (v1 controllers or the v2 unified tree, `/berth/<id>`),
//! the host's `/proc/stat` (the system CPU time `docker stats` divides by)
//! and its network namespace's `/proc/PID/net/dev`.

use std::collections::BTreeMap;

use super::cgroup::ContainerCgroup;
use super::{ContainerError, ContainerRecord, ContainerService, Status};

/// Nanoseconds per clock tick of `/proc/stat` and `cpuacct.stat`.
const NS_PER_TICK: u64 = 10_000_000;

/// One network interface's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One block I/O counter (`major:minor op value`).
#[derive(Debug, Clone, PartialEq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// A sample of a container's resource use.
#[derive(Debug, Clone, Default)]
pub struct StatsSample {
    /// RFC 3339 with nanoseconds.
    pub read: String,
    pub cpu_total_ns: u64,
    pub cpu_percpu_ns: Vec<u64>,
    pub cpu_user_ns: u64,
    pub cpu_kernel_ns: u64,
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    /// (periods, throttled periods, throttled time in ns).
    pub throttling: (u64, u64, u64),
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    pub memory_limit: u64,
    pub memory_failcnt: u64,
    pub memory_stat: BTreeMap<String, u64>,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    pub blkio: Vec<BlkioEntry>,
    pub networks: BTreeMap<String, NetCounters>,
}

impl ContainerService {
    /// The container and, if it runs, a sample of its resource use.
    pub fn stats_sample(
        &self,
        name_or_id: &str,
    ) -> Result<(ContainerRecord, Option<StatsSample>), ContainerError> {
        let record = self.resolve(name_or_id)?;
        if record.state.status != Status::Running {
            return Ok((record, None));
        }
        let cgroup = ContainerCgroup::of(&record.id);
        let mut s = StatsSample {
            read: super::jsonlog::now_rfc3339_nano(),
            system_cpu_ns: system_cpu_ns(),
            online_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            ..StatsSample::default()
        };
        read_cpu(&cgroup, &mut s);
        read_memory(&cgroup, &mut s);
        read_pids_and_io(&cgroup, &mut s);
        if let Some(pid) = record.state.pid {
            s.networks = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
                .map(|t| parse_net_dev(&t))
                .unwrap_or_default();
        }
        Ok((record, Some(s)))
    }
}

fn number(text: Option<String>) -> u64 {
    text.and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

/// `key value` lines.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn read_cpu(cg: &ContainerCgroup, s: &mut StatsSample) {
    if let Some(usage) = cg.read_file("cpuacct.usage") {
        s.cpu_total_ns = number(Some(usage));
        s.cpu_percpu_ns = cg
            .read_file("cpuacct.usage_percpu")
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let stat = parse_flat_keyed(&cg.read_file("cpuacct.stat").unwrap_or_default());
        s.cpu_user_ns = stat.get("user").copied().unwrap_or(0) * NS_PER_TICK;
        s.cpu_kernel_ns = stat.get("system").copied().unwrap_or(0) * NS_PER_TICK;
        let throttle = parse_flat_keyed(&cg.read_file("cpu.stat").unwrap_or_default());
        let get = |k: &str| throttle.get(k).copied().unwrap_or(0);
        s.throttling = (
            get("nr_periods"),
            get("nr_throttled"),
            get("throttled_time"),
        );
    } else if let Some(stat) = cg.read_file("cpu.stat") {
        let stat = parse_flat_keyed(&stat);
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        s.cpu_total_ns = get("usage_usec") * 1000;
        s.cpu_user_ns = get("user_usec") * 1000;
        s.cpu_kernel_ns = get("system_usec") * 1000;
        s.throttling = (
            get("nr_periods"),
            get("nr_throttled"),
            get("throttled_usec") * 1000,
        );
    }
}

fn read_memory(cg: &ContainerCgroup, s: &mut StatsSample) {
    let host = host_memory();
    if let Some(usage) = cg.read_file("memory.usage_in_bytes") {
        s.memory_usage = number(Some(usage));
        s.memory_max_usage = number(cg.read_file("memory.max_usage_in_bytes"));
        s.memory_limit = number(cg.read_file("memory.limit_in_bytes"));
        s.memory_failcnt = number(cg.read_file("memory.failcnt"));
    } else {
        s.memory_usage = number(cg.read_file("memory.current"));
        s.memory_limit = cg
            .read_file("memory.max")
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(host);
    }
    // Unlimited reads as the host's memory, as dockerd shows it.
    if s.memory_limit == 0 || s.memory_limit > host {
        s.memory_limit = host;
    }
    s.memory_stat = parse_flat_keyed(&cg.read_file("memory.stat").unwrap_or_default());
}

fn read_pids_and_io(cg: &ContainerCgroup, s: &mut StatsSample) {
    s.pids_current = number(cg.read_file("pids.current"));
    s.pids_limit = cg.read_file("pids.max").and_then(|m| m.trim().parse().ok());
    if let Some(text) = cg.read_file("blkio.throttle.io_service_bytes_recursive") {
        s.blkio = parse_blkio_v1(&text);
    } else if let Some(text) = cg.read_file("io.stat") {
        s.blkio = parse_io_stat_v2(&text);
    }
}

/// `8:0 Read 4096` lines (the `Total` line left out).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, value) = (f.next()?, f.next()?, f.next()?);
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// `8:0 rbytes=1 wbytes=2 …` lines, as `read`/`write` entries.
pub fn parse_io_stat_v2(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let op = match kv.split_once('=') {
                Some(("rbytes", v)) => ("read", v),
                Some(("wbytes", v)) => ("write", v),
                _ => continue,
            };
            if let Ok(value) = op.1.parse() {
                out.push(BlkioEntry {
                    major,
                    minor,
                    op: op.0.into(),
                    value,
                });
            }
        }
    }
    out
}

/// `/proc/PID/net/dev`: every interface but `lo`.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetCounters> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let n: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if name == "lo" || n.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetCounters {
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            },
        );
    }
    out
}

/// The host's CPU time (all CPUs, all states) in nanoseconds.
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .unwrap_or(0)
        * NS_PER_TICK
}

fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_parse() {
        let v1 = parse_blkio_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n");
        assert_eq!(v1.len(), 3);
        assert_eq!(
            v1[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 512
            }
        );
        let v2 = parse_io_stat_v2("259:0 rbytes=10 wbytes=20 rios=1 wios=2\n");
        assert_eq!(v2.iter().map(|e| e.value).collect::<Vec<_>>(), vec![10, 20]);
        let keyed = parse_flat_keyed("cache 5\nrss 7\nbad\n");
        assert_eq!(keyed.get("rss"), Some(&7));
    }

    #[test]
    fn net_dev_skips_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let nets = parse_net_dev(text);
        assert_eq!(nets.len(), 1);
        let eth0 = &nets["eth0"];
        assert_eq!(
            (eth0.rx_bytes, eth0.tx_bytes, eth0.tx_dropped),
            (2000, 3000, 4)
        );
    }
}
