"""Issue 15, defects 5 and 6: security flags and the other HostConfig
fields are applied as Docker applies them, or refused with a clear message
— never accepted and ignored.

Each case runs a real container through the docker CLI and reads what the
kernel says inside it (/proc/self/status, /proc/1/ns, cgroup files on the
host), so a flag that is only stored, not applied, fails.
"""

from __future__ import annotations

import json
import os
import socket

import pytest


def run(daemon, image, *args, check=True):
    p = daemon.docker("run", "--rm", *args, check=check)
    return p


def out(daemon, image, *flags_and_cmd):
    return run(daemon, image, *flags_and_cmd).stdout


def status_field(text: str, field: str) -> str:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in {text!r}")


def cap_eff(daemon, image, *flags) -> int:
    text = out(daemon, image, *flags, image, "cat", "/proc/self/status")
    return int(status_field(text, "CapEff"), 16)


DEFAULT_CAPS = 0x00000000a80425fb  # Docker's 14 default capabilities
CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_CHOWN, CAP_MKNOD = 1 << 21, 1 << 12, 1 << 0, 1 << 27


def own_cap_eff() -> int:
    with open("/proc/self/status") as f:
        return int(status_field(f.read(), "CapEff"), 16)


def test_capabilities_follow_cap_add_cap_drop_and_privileged(daemon, image):
    assert cap_eff(daemon, image) == DEFAULT_CAPS
    added = cap_eff(daemon, image, "--cap-add", "sys_admin", "--cap-drop", "CAP_CHOWN")
    assert added == (DEFAULT_CAPS | CAP_SYS_ADMIN) & ~CAP_CHOWN
    assert cap_eff(daemon, image, "--cap-drop", "ALL", "--cap-add", "NET_ADMIN") == CAP_NET_ADMIN
    assert cap_eff(daemon, image, "--cap-add", "ALL", "--cap-drop", "MKNOD") == own_cap_eff() & ~CAP_MKNOD
    assert cap_eff(daemon, image, "--privileged") == own_cap_eff()
    p = run(daemon, image, "--cap-add", "NOPE", image, "true", check=False)
    assert p.returncode != 0
    assert 'invalid CapAdd: unknown capability: "CAP_NOPE"' in p.stderr


def test_privileged_gets_devices_writable_sys_and_no_seccomp(daemon, image):
    text = out(daemon, image, "--privileged", image, "sh", "-c",
               "cat /proc/self/status; ls /dev; grep ' /sys ' /proc/mounts")
    assert status_field(text, "Seccomp") == "0"
    assert "loop-control" in text.split()
    sys_line = [l for l in text.splitlines() if " /sys " in l][0]
    assert " rw," in sys_line, sys_line
    plain = out(daemon, image, image, "sh", "-c", "cat /proc/self/status; ls /dev")
    assert status_field(plain, "Seccomp") == "2"
    assert "loop-control" not in plain.split()


def test_devices_are_created_and_allowed(daemon, image):
    text = out(daemon, image, "--device", "/dev/null:/dev/mynull:rw", image, "sh", "-c",
               "ls -l /dev/mynull; echo x > /dev/mynull && echo written")
    assert text.startswith("c") and "1,   3" in text and "written" in text
    p = run(daemon, image, "--device", "/dev/nope-berth", image, "true", check=False)
    assert p.returncode != 0
    assert ('error gathering device information while adding custom device '
            '"/dev/nope-berth": no such file or directory') in p.stderr


def test_pid_uts_and_ipc_modes(daemon, image):
    host_pidns = os.readlink("/proc/self/ns/pid")
    assert out(daemon, image, "--pid", "host", image, "readlink", "/proc/self/ns/pid").strip() == host_pidns
    assert out(daemon, image, image, "readlink", "/proc/self/ns/pid").strip() != host_pidns
    assert out(daemon, image, "--uts", "host", image, "hostname").strip() == socket.gethostname()
    p = run(daemon, image, "--uts", "host", "--hostname", "x", image, "true", check=False)
    assert "conflicting options: hostname and the UTS mode" in p.stderr
    assert "/dev/shm" not in out(daemon, image, "--ipc", "none", image, "cat", "/proc/mounts")
    sized = out(daemon, image, "--shm-size", "8m", image, "grep", "/dev/shm", "/proc/mounts")
    assert "size=8192k" in sized


def test_security_opts_are_applied_or_refused(daemon, image):
    nnp = out(daemon, image, "--security-opt", "no-new-privileges", image, "cat", "/proc/self/status")
    assert status_field(nnp, "NoNewPrivs") == "1"
    unconfined = out(daemon, image, "--security-opt", "seccomp=unconfined", image, "cat",
                     "/proc/self/status")
    assert status_field(unconfined, "Seccomp") == "0"
    p = run(daemon, image, "--security-opt", "bogus=1", image, "true", check=False)
    assert 'invalid --security-opt 2: "bogus=1"' in p.stderr


def test_group_add_user_limits_and_files(daemon, image, uniq):
    groups = out(daemon, image, "--group-add", "1234", "--group-add", "user", image, "id", "-G")
    assert sorted(groups.split()) == ["0", "1000", "1234"]
    text = out(daemon, image, "--ulimit", "nofile=123:456", "--oom-score-adj", "300",
               "--read-only", "--dns", "192.0.2.53", "--dns-search", "example.test",
               "--add-host", "db:192.0.2.7", image, "sh", "-c",
               "ulimit -n; cat /proc/self/oom_score_adj; touch /x 2>&1; "
               "cat /etc/resolv.conf /etc/hosts")
    assert "123\n300\n" in text
    assert "Read-only file system" in text
    assert "nameserver 192.0.2.53" in text and "search example.test" in text
    assert "192.0.2.7\tdb" in text


def test_resource_limits_reach_the_cgroup(daemon, image, uniq):
    name = f"{uniq}-limits"
    daemon.docker("run", "-d", "--name", name, "-m", "64m", "--pids-limit", "33",
                  "--cpus", "0.5", image, "sleep", "60")
    cid = json.loads(daemon.docker("inspect", name).stdout)[0]["Id"]

    def read(controller, file):
        with open(f"/sys/fs/cgroup/{controller}/berth/{cid}/{file}") as f:
            return f.read().strip()

    assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read("pids", "pids.max") == "33"
    assert read("cpu", "cpu.cfs_quota_us") == "50000"
    p = run(daemon, image, "-m", "1k", image, "true", check=False)
    assert "Minimum memory limit allowed is 6MB" in p.stderr


@pytest.mark.parametrize("flags, message", [
    (["--log-driver", "bogus"], 'error looking up logging plugin bogus: plugin "bogus" not found'),
    (["--log-opt", "tag=x"], "log attributes are not implemented yet"),
    (["-p", "80/xyz"], "invalid proto: xyz"),
    (["--restart", "sometimes"], "invalid restart policy: unknown policy 'sometimes'"),
    (["--link", "other:db"], "legacy links are not implemented"),
    (["--runtime", "nope"], "unknown or invalid runtime name: nope"),
    (["--ulimit", "bogus=1:1"], "invalid ulimit type: bogus"),
    (["--health-cmd", "true", "--health-start-period", "1us"],
     "StartPeriod in Healthcheck cannot be less than 1ms"),
    (["--tmpfs", "/t:bogus"], 'invalid tmpfs option "bogus"'),
])
def test_fields_that_cannot_be_honoured_are_refused(daemon, image, flags, message):
    before = daemon.docker("ps", "-aq").stdout.split()
    p = daemon.docker("create", *flags, image, "true", check=False)
    assert p.returncode != 0, p.stdout
    assert message in p.stderr, p.stderr
    # Nothing recorded: the create was refused whole.
    assert daemon.docker("ps", "-aq").stdout.split() == before


def test_inspect_shows_dockers_default_runtime_name(daemon, image, uniq):
    name = f"{uniq}-rt"
    daemon.docker("create", "--name", name, image, "true")
    assert daemon.docker("inspect", "-f", "{{.HostConfig.Runtime}}", name).stdout.strip() == "runc"


def test_api_only_values_are_checked_too(daemon, image):
    """What the docker CLI checks itself, an API client may still send."""
    for host_config, message in [
        ({"Sysctls": {"kernel.hostname": "x"}}, "sysctl 'kernel.hostname' is not whitelisted"),
        ({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "rel"}]}, "is not an absolute path"),
        ({"DeviceCgroupRules": ["x 1:3 r"]}, "invalid device cgroup rule format"),
        ({"PidMode": "bogus"}, "invalid PID mode: bogus"),
        ({"Memory": "lots"}, "invalid"),
    ]:
        status, body = daemon.api("POST", "/containers/create",
                                  {"Image": image, "Cmd": ["true"], "HostConfig": host_config})
        assert status == 400, (host_config, body)
        assert message in body["message"], (host_config, body)


def test_oversized_body_is_a_json_413(daemon):
    """axum's own rejections reach Docker clients as {"message": …}. The
    server answers before the body is all sent, so the request goes over
    a raw socket that reads the answer even when the send is cut."""
    body = json.dumps({"Image": "x", "Env": ["A=" + "x" * (3 << 20)]}).encode()
    head = (f"POST /containers/create HTTP/1.1\r\nHost: berth\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(daemon.sock)
    try:
        try:
            sock.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413", answer[:300]
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower()
    assert "length limit exceeded" in json.loads(payload)["message"]


def test_endpoint_settings_are_checked_or_refused_not_dropped(daemon, image):
    # A network that does not exist: made as dockerd makes it; its start
    # fails (test_container_networks.py).
    status, body = daemon.api("POST", "/containers/create", {
        "Image": image, "Cmd": ["true"],
        "NetworkingConfig": {"EndpointsConfig": {"backend": {"Aliases": ["db"]}}}})
    assert status == 201, body
    daemon.api("DELETE", f"/containers/{body['Id']}")
    status, body = daemon.api("POST", "/containers/create", {
        "Image": image, "Cmd": ["true"],
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["db"]}}}})
    assert status == 400, body
    assert body["message"] == ("invalid endpoint settings:\nnetwork-scoped alias is supported "
                               "only for containers in user defined networks")
    status, body = daemon.api("POST", "/containers/create", {
        "Image": image, "Cmd": ["true"],
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Links": ["a:b"]}}}})
    assert status == 400 and "EndpointsConfig.bridge.Links" in body["message"], body
    status, body = daemon.api("POST", "/containers/create", {
        "Image": image, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"},
        "NetworkingConfig": {"EndpointsConfig": {"none": {}}}})
    assert status == 201, body
    daemon.api("DELETE", f"/containers/{body['Id']}")


def test_more_values_docker_refuses_at_create(daemon, image):
    """The outside tester's findings F2, F5–F7: each a 400 at create, and a
    huge memory limit no longer panics the start."""
    for body, message in [
        ({"HostConfig": {"Memory": -5}}, "Minimum memory limit allowed is 6MB"),
        ({"HostConfig": {"CpuShares": -1}}, "invalid CPU shares"),
        ({"HostConfig": {"CpuQuota": -5}}, "CPU cfs quota"),
        ({"HostConfig": {"OomKillDisable": True}}, "--oom-kill-disable"),
        ({"NetworkDisabled": True}, "NetworkDisabled"),
        ({"StopSignal": "SIGJUNK"}, "Invalid signal: SIGJUNK"),
    ]:
        status, answer = daemon.api("POST", "/containers/create",
                                    {"Image": image, "Cmd": ["true"], **body})
        assert status == 400 and message in answer["message"], (body, answer)
    status, answer = daemon.api("POST", "/containers/create", {
        "Image": image, "Cmd": ["true"], "HostConfig": {"Memory": 4611686018427387904}})
    assert status == 201, answer
    assert daemon.api("POST", f"/containers/{answer['Id']}/start")[0] == 204
    daemon.docker("wait", answer["Id"])
    assert daemon.api("DELETE", f"/containers/{answer['Id']}")[0] == 204


def test_read_only_root_makes_etc_files_read_only(daemon, image):
    out = daemon.docker("run", "--rm", "--read-only", image, "sh", "-c",
                        "touch /etc/hosts 2>&1; echo rc=$?").stdout
    assert "Read-only file system" in out and "rc=1" in out


def test_relative_working_dir_and_path_like_sysctls_are_refused(daemon, image):
    for body, message in [
        ({"WorkingDir": "rel/dir"}, "needs to be an absolute path"),
        ({"HostConfig": {"Sysctls": {"fs.mqueue./../../kernel/core_pattern": "x"}}},
         "invalid sysctl name"),
    ]:
        status, answer = daemon.api("POST", "/containers/create",
                                    {"Image": image, "Cmd": ["true"], **body})
        assert status == 400 and message in answer["message"], (body, answer)


def test_init_runs_tini_as_pid_1_and_reaps_orphans(daemon, image, dockerd, dockerd_image):
    """`--init`: the host's static tini is pid 1, the program its child;
    an orphaned zombie is reaped. dockerd (docker-init is tini) agrees."""
    script = ("cat /proc/1/cmdline | tr '\\0' ' '; echo; "
              "sh -c 'sleep 0.2 & exec true'; sleep 1; "
              "cat /proc/[0-9]*/status | grep -c '^State:.*Z' || true")
    outs = []
    for engine, img in ((daemon, image), (dockerd, dockerd_image)):
        out = engine.docker("run", "--rm", "--net", "none", "--init", img, "sh", "-c",
                            script).stdout.splitlines()
        outs.append(out)
    for out in outs:
        assert out[0].startswith("/sbin/docker-init -- sh -c"), out
        assert out[-1].strip() == "0", f"zombies left: {out}"


def test_tmpfs_flag_mounts_with_dockers_defaults(daemon, image, dockerd, dockerd_image):
    script = "grep ' /run ' /proc/self/mountinfo | cut -d' ' -f6; grep ' /w ' /proc/self/mounts"
    seen = []
    for engine, img in ((daemon, image), (dockerd, dockerd_image)):
        out = engine.docker("run", "--rm", "--net", "none", "--tmpfs", "/run:size=1m",
                            "--tmpfs", "/w:exec,mode=1700", img, "sh", "-c", script).stdout
        seen.append(out.splitlines())
    for lines in seen:
        flags = set(lines[0].split(","))
        assert {"nosuid", "nodev", "noexec"} <= flags, lines
        assert "noexec" not in lines[1] and "mode=1700" in lines[1], lines
    assert sorted(seen[0][0].split(",")) == sorted(seen[1][0].split(","))


def test_container_processes_start_with_default_signal_actions(daemon, image, uniq):
    """No signal ignored or blocked in a container's process, its init or
    an exec, as in Docker's (the shim is Rust, which ignores SIGPIPE, and
    an ignored signal survives execve): `yes | head` ends, as it must."""
    text = out(daemon, image, image, "cat", "/proc/self/status")
    assert status_field(text, "SigIgn") == "0000000000000000", text
    assert status_field(text, "SigBlk") == "0000000000000000", text
    piped = daemon.docker("run", "--rm", image, "sh", "-c", "yes | head -c 6", timeout=60)
    assert piped.stdout == "y\ny\ny\n"
    name = f"sig-{uniq}"
    daemon.docker("run", "-d", "--name", name, image, "sleep", "300")
    try:
        text = daemon.docker("exec", name, "cat", "/proc/self/status").stdout
        assert status_field(text, "SigIgn") == "0000000000000000", text
        assert status_field(text, "SigBlk") == "0000000000000000", text
    finally:
        daemon.docker("rm", "-f", name, check=False)
