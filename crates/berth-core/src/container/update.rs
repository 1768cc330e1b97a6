//! `docker update`: a container's resources and restart policy changed,
//! checked as at create, stored, and applied at once to a running
//! container's cgroup (moby's `daemon/update.go`: a field left zero or
//! absent keeps its value).

use serde_json::{Map, Value};

use super::cgroup::ContainerCgroup;
use super::options::ContainerOptions;
use super::restart::{parse_restart_policy, RestartPolicy};
use super::{ContainerError, ContainerService, Status};

/// The fields `docker update` may change.
const UPDATABLE: [&str; 12] = [
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "NanoCpus",
    "CpuShares",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "CpusetMems",
    "PidsLimit",
    "BlkioWeight",
    "RestartPolicy",
];

impl ContainerService {
    /// Applies `changes` (the update body) to container `name_or_id`.
    pub fn update(
        &self,
        name_or_id: &str,
        changes: &Map<String, Value>,
    ) -> Result<(), ContainerError> {
        let id = self.resolve(name_or_id)?.id;
        let _guard = self.locks.lock(&id);
        let record = self.resolve(&id)?;
        let mut host = record.host_config.clone();
        for key in UPDATABLE {
            match changes.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_f64() == Some(0.0) && key != "PidsLimit" => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(v) => {
                    host.extra.insert(key.to_string(), v.clone());
                }
            }
        }
        let policy = parse_restart_policy(host.extra.get("RestartPolicy"))
            .map_err(ContainerError::InvalidConfig)?;
        if host.auto_remove && policy != RestartPolicy::No {
            return Err(ContainerError::InvalidConfig(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        let options = ContainerOptions::parse(&record.config, &host)?;
        if record.state.status == Status::Running {
            apply_to_cgroup(&ContainerCgroup::of(&id), &options)
                .map_err(|e| ContainerError::Start(format!("Cannot update container {id}: {e}")))?;
        }
        self.store.set_container_host_config(&id, &host)?;
        self.publish("update", &record, &[]);
        Ok(())
    }
}

/// Writes the resources to a running container's cgroup (v1 files, or
/// their v2 equivalents).
fn apply_to_cgroup(cg: &ContainerCgroup, options: &ContainerOptions) -> std::io::Result<()> {
    let r = &options.resources;
    if r.memory > 0 {
        let swap = if r.memory_swap == 0 {
            r.memory.saturating_mul(2)
        } else {
            r.memory_swap
        };
        // memsw must stay >= the limit: raise it first when growing.
        let _ = cg.write_file("memory.memsw.limit_in_bytes", &swap.to_string());
        cg.write_either("memory.limit_in_bytes", "memory.max", &r.memory.to_string())?;
        let _ = cg.write_file("memory.memsw.limit_in_bytes", &swap.to_string());
    }
    if r.memory_reservation > 0 {
        let v = r.memory_reservation.to_string();
        cg.write_either("memory.soft_limit_in_bytes", "memory.low", &v)?;
    }
    if r.cpu_shares > 0 {
        cg.write_either("cpu.shares", "cpu.weight", &r.cpu_shares.to_string())?;
    }
    let period = if r.cpu_period > 0 {
        r.cpu_period
    } else {
        100_000
    };
    let quota = if r.nano_cpus > 0 {
        r.nano_cpus * period / 1_000_000_000
    } else {
        r.cpu_quota
    };
    if quota != 0 {
        if cg
            .write_file("cpu.cfs_period_us", &period.to_string())
            .is_ok()
        {
            cg.write_file("cpu.cfs_quota_us", &quota.to_string())?;
        } else {
            cg.write_file("cpu.max", &format!("{quota} {period}"))?;
        }
    }
    if !r.cpuset_cpus.is_empty() {
        cg.write_file("cpuset.cpus", &r.cpuset_cpus)?;
    }
    if !r.cpuset_mems.is_empty() {
        cg.write_file("cpuset.mems", &r.cpuset_mems)?;
    }
    if let Some(limit) = r.pids_limit {
        let v = if limit > 0 {
            limit.to_string()
        } else {
            "max".into()
        };
        cg.write_file("pids.max", &v)?;
    }
    if r.blkio_weight > 0 {
        cg.write_either("blkio.weight", "io.weight", &r.blkio_weight.to_string())?;
    }
    Ok(())
}
