//! `docker top`: the host's `ps` with the caller's arguments (default
//! `-ef`), its rows kept for the container's processes (those in its
//! cgroup), as moby's `daemon/top_unix.go` does.

use std::process::Command;

use super::cgroup::ContainerCgroup;
use super::{ContainerError, ContainerService, Status};

/// `ps` output for a container: column titles and one row per process.
#[derive(Debug, Clone, PartialEq)]
pub struct TopOutput {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl ContainerService {
    /// `GET /containers/{id}/top?ps_args=`.
    pub fn top(&self, name_or_id: &str, ps_args: &str) -> Result<TopOutput, ContainerError> {
        let record = self.resolve(name_or_id)?;
        if record.state.status != Status::Running {
            return Err(ContainerError::NotRunningConflict(record.id));
        }
        let args = if ps_args.is_empty() { "-ef" } else { ps_args };
        let argv: Vec<&str> = args.split_whitespace().collect();
        let out = Command::new("ps")
            .args(&argv)
            .output()
            .map_err(|e| ContainerError::io("running ps", e))?;
        if !out.status.success() {
            return Err(ContainerError::Start(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let pids: Vec<i32> = ContainerCgroup::of(&record.id)
            .pids()
            .iter()
            .map(|p| p.raw())
            .collect();
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids).map_err(ContainerError::Start)
    }
}

/// The header's titles and the rows whose PID is in `pids`; the last
/// column takes the rest of its line (a command with spaces).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<TopOutput, String> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_column = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or("Couldn't find PID field in ps output")?;
    let mut processes = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_column).and_then(|p| p.parse::<i32>().ok()) else {
            return Err(format!(
                "Unexpected pid '{}': invalid pid",
                fields.get(pid_column).unwrap_or(&"")
            ));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let last = titles.len().saturating_sub(1).min(fields.len());
        let mut row: Vec<String> = fields[..last].iter().map(|s| s.to_string()).collect();
        row.push(fields[last..].join(" "));
        processes.push(row);
    }
    Ok(TopOutput { titles, processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
root         420     400  0 10:01 ?        00:00:00 sleep 300\n\
root         421     420  0 10:01 pts/0    00:00:00 sh -c echo a  b\n";

    #[test]
    fn rows_are_the_containers_with_the_command_whole() {
        let top = parse_ps(PS, &[420, 421]).unwrap();
        assert_eq!(top.titles.len(), 8);
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[0][1], "420");
        assert_eq!(top.processes[0][7], "sleep 300");
        assert_eq!(top.processes[1][7], "sh -c echo a b");
    }

    #[test]
    fn a_header_without_pid_is_refused() {
        let err = parse_ps("USER COMMAND\nroot x\n", &[1]).unwrap_err();
        assert_eq!(err, "Couldn't find PID field in ps output");
    }
}
