"""Must-show 1: the stock docker CLI runs containers on berth.

One berth daemon and one busybox image (made with `docker import`) are shared
by the module's tests. Every test uses unique container/volume names and
removes what it made, also when it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from busybox_image import berth_with_cleanup, import_busybox, remove_all_containers
from container_helpers import ps_status, wait_for_log
from conftest import DOCKER_BIN, HEX64, _docker_env



class Names:
    """Unique names; containers and volumes made under them are removed at
    the end of the test."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.prefix = "t" + uuid.uuid4().hex[:10]
        self.n = 0
        self.volumes: list[str] = []

    def __call__(self, what="c"):
        self.n += 1
        return f"{self.prefix}-{what}{self.n}"

    def volume(self):
        v = self("vol")
        self.volumes.append(v)
        return v

    def cleanup(self):
        status, body = self.daemon.api("GET", "/containers/json?all=1")
        if status == 200:
            for c in body:
                if any(n.lstrip("/").startswith(self.prefix) for n in c.get("Names") or []):
                    self.daemon.api("DELETE", f"/containers/{c['Id']}?force=1&v=1")
        for v in self.volumes:
            self.daemon.api("DELETE", f"/volumes/{v}?force=1")


@pytest.fixture
def names(daemon):
    n = Names(daemon)
    try:
        yield n
    finally:
        n.cleanup()


@pytest.fixture
def hostdir():
    d = tempfile.mkdtemp(prefix="berth-bind-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def all_ids(daemon) -> set[str]:
    return set(daemon.docker("ps", "-a", "-q", "--no-trunc").stdout.split())


def inspect(daemon, name) -> dict:
    [c] = json.loads(daemon.docker("inspect", name).stdout)
    return c


def state(daemon, name) -> dict:
    return inspect(daemon, name)["State"]


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_stderr_ok(stderr: str) -> bool:
    """run's stderr holds nothing (no warning: berth has bridge networking)."""
    return stderr.strip() == ""


# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------


def test_run_rm_echo_prints_hi_and_leaves_nothing(daemon, image, names):
    before = all_ids(daemon)
    name = names()
    p = daemon.docker("run", "--rm", "--name", name, image, "echo", "hi")
    assert p.returncode == 0
    assert p.stdout == "hi\n"
    assert run_stderr_ok(p.stderr), p.stderr
    assert all_ids(daemon) == before
    assert ps_status(daemon, name) is None
    q = daemon.docker("inspect", name, check=False)
    assert q.returncode != 0
    assert "No such" in q.stderr


def test_run_rm_on_empty_daemon_ps_a_is_empty(berth_factory):
    d = berth_factory().start()
    try:
        img = import_busybox(d, "solo:latest")
        p = d.docker("run", "--rm", img, "echo", "hi")
        assert p.stdout == "hi\n"
        assert d.docker("ps", "-a", "-q").stdout == ""
        status, body = d.api("GET", "/containers/json?all=1")
        assert (status, body) == (200, [])
    finally:
        remove_all_containers(d)


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (Debian package runc)")
@pytest.mark.parametrize("runtime", ["runc", "/usr/sbin/runc"])
def test_run_with_external_runtime(daemon, image, names, runtime):
    """--runtime names an external OCI runtime binary instead of the embedded one."""
    name = names()
    p = daemon.docker("run", "--runtime", runtime, "--name", name, image, "sh", "-c", "echo via-runc; exit 4", check=False)
    assert p.returncode == 4, p.stderr
    assert p.stdout == "via-runc\n"
    assert daemon.docker("inspect", "-f", "{{.HostConfig.Runtime}}", name).stdout.strip() == runtime


def test_run_on_the_default_bridge_prints_nothing(daemon, image, names):
    p = daemon.docker("run", "--rm", "--name", names(), image, "true")
    assert p.stdout == ""
    assert p.stderr == ""


def test_run_exit_code_propagates(daemon, image, names):
    name = names()
    p = daemon.docker("run", "--name", name, image, "sh", "-c", "exit 7", check=False)
    assert p.returncode == 7, p.stderr
    st = state(daemon, name)
    assert st["ExitCode"] == 7
    assert st["Status"] == "exited"
    assert st["Running"] is False


def test_run_stdout_and_stderr_separated(daemon, image, names):
    p = daemon.docker("run", "--rm", "--name", names(), image, "sh", "-c",
                      "echo to-out; echo to-err >&2", check=False)
    assert p.returncode == 0
    assert p.stdout == "to-out\n"
    assert "to-err\n" in p.stderr
    assert "to-err" not in p.stdout


def test_run_command_not_found_exits_127(daemon, image, names):
    name = names()
    p = daemon.docker("run", "--name", name, image, "no-such-binary-xyz", check=False)
    assert p.returncode == 127, (p.stdout, p.stderr)


def test_run_detached_then_logs_follow(daemon, image, names):
    name = names()
    pause = 8  # seconds between line1 and line2
    script = f"echo line1; sleep {pause}; echo line2; echo err1 >&2; sleep 0.3; echo line3"
    t0 = time.monotonic()  # before the container starts: line2 comes at t0 + pause at the earliest
    p = daemon.docker("run", "-d", "--name", name, image, "sh", "-c", script)
    cid = p.stdout.strip()
    assert HEX64.match(cid), p.stdout
    assert p.stdout == cid + "\n"

    argv = [DOCKER_BIN, "-H", daemon.host, "logs", "-f", name]
    proc = subprocess.Popen(argv, env=_docker_env(None, daemon.docker_config),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first == "line1\n"
        # Streamed live: line1 arrives while the container still sleeps
        # (the run and the follow's start included; 2 s short of line2).
        took = time.monotonic() - t0
        assert took < pause - 2, f"line1 came {took:.1f} s after the run"
        out, err = proc.communicate(timeout=30)  # -f ends when the container exits
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert first + out == "line1\nline2\nline3\n"
    assert err == "err1\n"

    # After the end: plain logs, --tail.
    assert daemon.docker("logs", name).stdout == "line1\nline2\nline3\n"
    assert daemon.docker("logs", "--tail", "1", name).stdout == "line3\n"
    assert daemon.docker("logs", "--tail", "0", name).stdout == ""
    assert daemon.docker("wait", name).stdout == "0\n"


# --------------------------------------------------------------------------
# stop / kill / wait
# --------------------------------------------------------------------------


def test_stop_honours_sigterm_trap(daemon, image, names):
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c",
                  'trap "echo got-term; exit 42" TERM; echo ready; '
                  "while true; do sleep 0.1; done")
    wait_for_log(daemon, name, "ready")
    t0 = time.monotonic()
    p = daemon.docker("stop", name)
    elapsed = time.monotonic() - t0
    assert p.stdout == name + "\n"
    assert elapsed < 8, f"stop took {elapsed:.1f}s: SIGTERM not honoured?"
    assert daemon.docker("wait", name).stdout == "42\n"
    st = state(daemon, name)
    assert st["ExitCode"] == 42
    assert st["Status"] == "exited"
    assert "got-term" in daemon.docker("logs", name).stdout
    assert ps_status(daemon, name).startswith("Exited (42)")


def test_stop_t1_kills_sh_ignoring_term(daemon, image, names):
    # sh as PID 1 without a trap: SIGTERM has no default action for PID 1.
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c",
                  "echo ready; while true; do sleep 0.1; done")
    wait_for_log(daemon, name, "ready")
    t0 = time.monotonic()
    daemon.docker("stop", "-t", "1", name)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 6, f"stop -t 1 took {elapsed:.2f}s"
    assert daemon.docker("wait", name).stdout == "137\n"
    assert state(daemon, name)["ExitCode"] == 137
    assert ps_status(daemon, name).startswith("Exited (137)")


def test_stop_already_exited_is_ok(daemon, image, names):
    name = names()
    daemon.docker("run", "--name", name, image, "true")
    p = daemon.docker("stop", name)
    assert p.stdout == name + "\n"
    assert state(daemon, name)["ExitCode"] == 0


def test_kill_s_kill(daemon, image, names):
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c",
                  'trap "" TERM; echo ready; while true; do sleep 0.1; done')
    wait_for_log(daemon, name, "ready")
    p = daemon.docker("kill", "-s", "KILL", name)
    assert p.stdout == name + "\n"
    assert daemon.docker("wait", name).stdout == "137\n"
    st = state(daemon, name)
    assert st["Status"] == "exited"
    assert st["ExitCode"] == 137


def test_kill_with_trapped_signal(daemon, image, names):
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c",
                  'trap "exit 11" USR1; echo ready; while true; do sleep 0.1; done')
    wait_for_log(daemon, name, "ready")
    daemon.docker("kill", "-s", "USR1", name)
    assert daemon.docker("wait", name).stdout == "11\n"


def test_kill_not_running_is_409(daemon, image, names):
    name = names()
    daemon.docker("run", "--name", name, image, "true")
    p = daemon.docker("kill", name, check=False)
    assert p.returncode != 0
    status, body = daemon.api("POST", f"/containers/{name}/kill")
    assert status == 409, body
    assert "is not running" in body["message"]


def test_wait_returns_exit_code(daemon, image, names):
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c", "sleep 1; exit 3")
    t0 = time.monotonic()
    p = daemon.docker("wait", name)
    assert p.stdout == "3\n"
    assert time.monotonic() - t0 > 0.3  # it really waited
    # Again, on the exited container: immediate.
    t0 = time.monotonic()
    assert daemon.docker("wait", name).stdout == "3\n"
    assert time.monotonic() - t0 < 5


def test_wait_api_shape(daemon, image, names):
    name = names()
    daemon.docker("run", "--name", name, image, "sh", "-c", "exit 4", check=False)
    status, headers, body = daemon.http("POST", f"/containers/{name}/wait")
    assert status == 200
    assert json.loads(body) == {"StatusCode": 4}


# --------------------------------------------------------------------------
# ps / rm
# --------------------------------------------------------------------------


def test_ps_states(daemon, image, names):
    created, running, exited = names(), names(), names()
    daemon.docker("create", "--name", created, image, "true")
    daemon.docker("run", "-d", "--name", running, image, "sleep", "300")
    daemon.docker("run", "--name", exited, image, "sh", "-c", "exit 3", check=False)

    assert ps_status(daemon, created) == "Created"
    assert ps_status(daemon, running).startswith("Up ")
    assert ps_status(daemon, exited).startswith("Exited (3) ")
    assert ps_status(daemon, exited).endswith(" ago")

    # Without -a only the running one.
    assert ps_status(daemon, running, all=False).startswith("Up ")
    assert ps_status(daemon, created, all=False) is None
    assert ps_status(daemon, exited, all=False) is None

    status, body = daemon.api("GET", "/containers/json?all=1")
    assert status == 200
    by_name = {c["Names"][0]: c for c in body}
    assert by_name["/" + created]["State"] == "created"
    assert by_name["/" + running]["State"] == "running"
    assert by_name["/" + exited]["State"] == "exited"
    assert by_name["/" + exited]["Command"] == "sh -c 'exit 3'"
    assert by_name["/" + running]["Image"] == image
    assert by_name["/" + running]["ImageID"].startswith("sha256:")


def test_rm_running_needs_force(daemon, image, names):
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sleep", "300")
    p = daemon.docker("rm", name, check=False)
    assert p.returncode != 0
    assert "container is running" in p.stderr
    assert ps_status(daemon, name).startswith("Up ")


def test_rm_f_running_container(daemon, image, names):
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c",
                  'trap "" TERM; while true; do sleep 0.1; done')
    wait_until(lambda: state(daemon, name)["Running"], what="running")
    pid = state(daemon, name)["Pid"]
    assert pid > 0 and os.path.exists(f"/proc/{pid}")
    t0 = time.monotonic()
    p = daemon.docker("rm", "-f", name)
    assert p.stdout == name + "\n"
    assert time.monotonic() - t0 < 8
    assert ps_status(daemon, name) is None
    q = daemon.docker("inspect", name, check=False)
    assert q.returncode != 0 and "No such" in q.stderr

    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] in ("Z", "X")
        except OSError:
            return True
    wait_until(gone, timeout=10, what=f"container process {pid} to end")


def test_container_prune(daemon, image, names):
    exited, running = names(), names()
    daemon.docker("run", "--name", exited, image, "true")
    daemon.docker("run", "-d", "--name", running, image, "sleep", "300")
    p = daemon.docker("container", "prune", "-f")
    assert ps_status(daemon, exited) is None
    assert ps_status(daemon, running).startswith("Up ")
    assert "Total reclaimed space" in p.stdout


# --------------------------------------------------------------------------
# config: -e, -w, -u, -i
# --------------------------------------------------------------------------


def test_env_and_workdir(daemon, image, names):
    p = daemon.docker("run", "--rm", "--name", names(), "-e", "FOO=bar", "-e", "EMPTY=",
                      "-w", "/tmp", image, "sh", "-c", 'pwd; echo "$FOO"; echo "[$EMPTY]"; echo $PATH')
    assert p.stdout.splitlines() == [
        "/tmp", "bar", "[]", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def test_workdir_created_if_missing(daemon, image, names):
    p = daemon.docker("run", "--rm", "--name", names(), "-w", "/new/dir", image, "pwd")
    assert p.stdout == "/new/dir\n"


def test_hostname_is_short_id(daemon, image, names):
    name = names()
    p = daemon.docker("run", "--name", name, image, "hostname")
    assert p.stdout.strip() == inspect(daemon, name)["Id"][:12]


def test_user_1000(daemon, image, names):
    p = daemon.docker("run", "--rm", "--name", names(), "-u", "1000:1000", image,
                      "sh", "-c", "id -u; id -g")
    assert p.stdout == "1000\n1000\n"
    p = daemon.docker("run", "--rm", "--name", names(), image, "id", "-u")
    assert p.stdout == "0\n"


def test_stdin_piped(daemon, image, names):
    p = daemon.docker("run", "--rm", "--name", names(), "-i", image, "cat", input="hello\n")
    assert p.stdout == "hello\n"
    big = "".join(f"line {i}\n" for i in range(20000))
    p = daemon.docker("run", "--rm", "--name", names(), "-i", image, "wc", "-l", input=big)
    assert p.stdout.strip() == "20000"


def test_stdin_not_attached_without_i(daemon, image, names):
    p = daemon.docker("run", "--rm", "--name", names(), image, "cat", input="ignored\n")
    assert p.returncode == 0
    assert p.stdout == ""


# --------------------------------------------------------------------------
# mounts
# --------------------------------------------------------------------------


def test_bind_mount_rw(daemon, image, names, hostdir):
    with open(os.path.join(hostdir, "from-host"), "w") as f:
        f.write("host data\n")
    p = daemon.docker("run", "--rm", "--name", names(), "-v", f"{hostdir}:/data", image,
                      "sh", "-c", "cat /data/from-host; echo written > /data/from-ctr")
    assert p.stdout == "host data\n"
    with open(os.path.join(hostdir, "from-ctr")) as f:
        assert f.read() == "written\n"


def test_bind_mount_ro(daemon, image, names, hostdir):
    with open(os.path.join(hostdir, "from-host"), "w") as f:
        f.write("host data\n")
    name = names()
    p = daemon.docker("run", "--name", name, "-v", f"{hostdir}:/data:ro", image,
                      "sh", "-c", "cat /data/from-host; echo x > /data/new", check=False)
    assert p.returncode != 0
    assert p.stdout == "host data\n"
    assert "Read-only file system" in p.stderr
    assert not os.path.exists(os.path.join(hostdir, "new"))
    assert state(daemon, name)["ExitCode"] != 0


def test_inspect_fields(daemon, image, names, hostdir):
    name = names()
    daemon.docker("run", "--name", name, "-v", f"{hostdir}:/data", "-e", "A=1",
                  image, "sh", "-c", "exit 5", check=False)
    c = inspect(daemon, name)
    assert HEX64.match(c["Id"])
    assert c["Name"] == "/" + name
    assert c["Path"] == "sh"
    assert c["Args"] == ["-c", "exit 5"]
    assert c["Image"].startswith("sha256:")
    assert c["Config"]["Image"] == image
    assert c["Config"]["Cmd"] == ["sh", "-c", "exit 5"]
    assert "A=1" in c["Config"]["Env"]
    st = c["State"]
    assert st["Status"] == "exited"
    assert st["ExitCode"] == 5
    assert st["Running"] is False
    assert st["Pid"] == 0
    assert st["StartedAt"] != "0001-01-01T00:00:00Z"
    assert st["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert c["Mounts"] == [{
        "Type": "bind", "Source": hostdir, "Destination": "/data", "Mode": "",
        "RW": True, "Propagation": "rprivate"}]

    ro = names()
    daemon.docker("create", "--name", ro, "-v", f"{hostdir}:/data:ro", image, "true")
    c = inspect(daemon, ro)
    [m] = c["Mounts"]
    assert (m["Source"], m["Destination"], m["RW"], m["Mode"]) == (hostdir, "/data", False, "ro")
    assert c["State"]["Status"] == "created"
    assert c["State"]["StartedAt"] == "0001-01-01T00:00:00Z"


def test_inspect_running(daemon, image, names):
    name = names()
    daemon.docker("run", "-d", "--name", name, image, "sleep", "300")
    wait_until(lambda: state(daemon, name)["Running"], what="running")
    st = state(daemon, name)
    assert st["Status"] == "running"
    assert st["Pid"] > 0
    assert st["ExitCode"] == 0
    assert st["FinishedAt"] == "0001-01-01T00:00:00Z"


def test_named_volume_persists_across_containers(daemon, image, names):
    vol = names.volume()
    daemon.docker("run", "--rm", "--name", names(), "-v", f"{vol}:/data", image,
                  "sh", "-c", "echo persisted > /data/f")
    assert vol in daemon.docker("volume", "ls", "-q").stdout.split()
    p = daemon.docker("run", "--rm", "--name", names(), "-v", f"{vol}:/data:ro", image,
                      "cat", "/data/f")
    assert p.stdout == "persisted\n"
    with open(os.path.join(daemon.mountpoint(vol), "f")) as f:
        assert f.read() == "persisted\n"

    # inspect of a container with the named volume.
    name = names()
    daemon.docker("create", "--name", name, "-v", f"{vol}:/data", image, "true")
    [m] = inspect(daemon, name)["Mounts"]
    assert m["Type"] == "volume"
    assert m["Name"] == vol
    assert m["Destination"] == "/data"
    assert m["Source"] == daemon.mountpoint(vol)
    assert m["RW"] is True
    assert m["Driver"] == "local"
    # In use: volume rm refused.
    p = daemon.docker("volume", "rm", vol, check=False)
    assert p.returncode != 0
    assert "in use" in p.stderr


def test_run_rm_anonymous_volume_leaves_nothing(daemon, image, names):
    before = set(daemon.docker("volume", "ls", "-q").stdout.split())
    p = daemon.docker("run", "--rm", "--name", names(), "-v", "/tmp/x", image,
                      "sh", "-c", "echo a > /tmp/x/f; cat /tmp/x/f")
    assert p.stdout == "a\n"
    after = set(daemon.docker("volume", "ls", "-q").stdout.split())
    assert after == before


def test_rm_v_removes_anonymous_volume(daemon, image, names):
    before = set(daemon.docker("volume", "ls", "-q").stdout.split())
    name = names()
    daemon.docker("run", "--name", name, "-v", "/anon", image, "true")
    [m] = inspect(daemon, name)["Mounts"]
    assert m["Type"] == "volume" and HEX64.match(m["Name"])
    assert set(daemon.docker("volume", "ls", "-q").stdout.split()) == before | {m["Name"]}
    daemon.docker("rm", "-v", name)
    assert set(daemon.docker("volume", "ls", "-q").stdout.split()) == before
