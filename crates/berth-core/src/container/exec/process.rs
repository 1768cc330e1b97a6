//! The OCI `process` an exec runs: the container's own (user, capabilities,
//! rlimits, no-new-privileges, OOM score) with the exec's command,
//! environment, working folder, user and terminal, as moby builds it
//! (`daemon/exec.go`, `execSetPlatformOpt`).

use serde_json::{json, Value};

use super::ExecRequest;
use crate::container::user::ResolvedUser;

/// What the exec changes in the container's process.
#[derive(Debug, Clone)]
pub struct ExecProcessInput<'a> {
    pub request: &'a ExecRequest,
    /// `User` resolved in the container's root filesystem (`None`: the
    /// container's own user).
    pub user: Option<ResolvedUser>,
    /// Every capability (for `Privileged`), else `None`.
    pub privileged_caps: Option<Vec<String>>,
}

/// The exec's process, from the container's `process` in its spec.
pub fn exec_process(container: &Value, input: &ExecProcessInput<'_>) -> Value {
    let req = input.request;
    let mut process = container.clone();
    process["args"] = json!(req.cmd);
    process["env"] = json!(exec_env(string_list(&container["env"]), req));
    if !req.working_dir.is_empty() {
        process["cwd"] = json!(req.working_dir);
    }
    if let Some(user) = &input.user {
        process["user"] = json!({
            "uid": user.uid,
            "gid": user.gid,
            "additionalGids": user.additional_gids,
        });
    }
    if let Some(caps) = &input.privileged_caps {
        process["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
        });
    }
    process["terminal"] = json!(req.tty);
    match (req.tty, req.console_size) {
        (true, Some(size)) if size.height > 0 && size.width > 0 => {
            process["consoleSize"] = json!({"height": size.height, "width": size.width});
        }
        _ => {
            if let Some(p) = process.as_object_mut() {
                p.remove("consoleSize");
            }
        }
    }
    process
}

/// The container's environment, `TERM=xterm` with a TTY unless set, then
/// the exec's variables replacing those of the same name (moby's
/// `ReplaceOrAppendEnvValues`).
pub fn exec_env(mut env: Vec<String>, req: &ExecRequest) -> Vec<String> {
    let name = |kv: &str| kv.split('=').next().unwrap_or_default().to_string();
    if req.tty && !env.iter().any(|kv| name(kv) == "TERM") {
        env.push("TERM=xterm".into());
    }
    for kv in &req.env {
        let key = name(kv);
        match env.iter_mut().find(|e| name(e) == key) {
            Some(existing) => *existing = kv.clone(),
            None => env.push(kv.clone()),
        }
    }
    env
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::exec::WindowSize;

    fn container_process() -> Value {
        json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0, "additionalGids": []},
            "args": ["sleep", "100"],
            "env": ["PATH=/bin", "HOSTNAME=abc", "A=1"],
            "cwd": "/srv",
            "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]},
            "rlimits": [],
            "noNewPrivileges": true,
        })
    }

    fn request(cmd: &[&str]) -> ExecRequest {
        ExecRequest {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..ExecRequest::default()
        }
    }

    #[test]
    fn the_container_process_is_the_base() {
        let req = request(&["id"]);
        let input = ExecProcessInput {
            request: &req,
            user: None,
            privileged_caps: None,
        };
        let p = exec_process(&container_process(), &input);
        assert_eq!(p["args"], json!(["id"]));
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["user"]["uid"], 0);
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(p["capabilities"]["effective"], json!(["CAP_CHOWN"]));
        assert_eq!(p["terminal"], false);
        assert!(p.get("consoleSize").is_none());
    }

    #[test]
    fn exec_options_replace_the_containers() {
        let mut req = request(&["sh"]);
        req.working_dir = "/tmp".into();
        req.tty = true;
        req.console_size = Some(WindowSize {
            height: 40,
            width: 120,
        });
        let input = ExecProcessInput {
            request: &req,
            user: Some(ResolvedUser {
                uid: 1000,
                gid: 100,
                additional_gids: vec![5],
            }),
            privileged_caps: Some(vec!["CAP_SYS_ADMIN".into()]),
        };
        let p = exec_process(&container_process(), &input);
        assert_eq!(p["cwd"], "/tmp");
        assert_eq!(
            p["user"],
            json!({"uid": 1000, "gid": 100, "additionalGids": [5]})
        );
        assert_eq!(p["capabilities"]["bounding"], json!(["CAP_SYS_ADMIN"]));
        assert_eq!(p["terminal"], true);
        assert_eq!(p["consoleSize"], json!({"height": 40, "width": 120}));
    }

    #[test]
    fn environment_is_replaced_or_appended() {
        let mut req = request(&["env"]);
        req.env = vec!["A=2".into(), "B=3".into()];
        let env = exec_env(vec!["PATH=/bin".into(), "A=1".into()], &req);
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
        req.tty = true;
        let env = exec_env(vec!["PATH=/bin".into()], &req);
        assert!(env.contains(&"TERM=xterm".to_string()));
        let env = exec_env(vec!["TERM=vt100".into()], &req);
        assert_eq!(env.iter().filter(|e| e.starts_with("TERM=")).count(), 1);
    }
}
