"""The daemon process, the system endpoints, and berth's own CLI."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from conftest import HEX64, log_tail


# --------------------------------------------------------------------------
# process
# --------------------------------------------------------------------------


def test_second_daemon_on_same_root_is_refused(berth, berth_factory):
    second = berth_factory(root=berth.root)
    proc = subprocess.run(second.argv(), capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "another berth daemon" in proc.stderr, proc.stderr
    assert not os.path.exists(second.sock)
    # The first one is untouched and still serves.
    assert berth.running()
    assert berth.http("GET", "/_ping")[0] == 200
    assert os.path.exists(berth.pidfile)


def test_sigterm_removes_socket_and_pidfile(berth):
    with open(berth.pidfile) as f:
        assert int(f.read().strip()) == berth.pid
    assert os.path.exists(berth.sock)
    rc = berth.stop()
    assert rc == 0, log_tail(berth.log)
    assert not os.path.exists(berth.sock)
    assert not os.path.exists(berth.pidfile)


def test_sigterm_as_soon_as_the_socket_appears_stops_cleanly(berth_factory):
    """A SIGTERM that comes the moment the socket exists (a service manager
    stopping a daemon it just started) is a clean stop, never the default
    action that kills the process: the handlers are installed before
    anything is bound. Ten starts, each stopped as early as the socket is
    seen."""
    daemon = berth_factory()
    for round_ in range(10):
        proc = daemon.spawn()
        deadline = time.monotonic() + 30
        while not os.path.exists(daemon.sock):
            assert proc.poll() is None and time.monotonic() < deadline, log_tail(daemon.log)
            time.sleep(0.001)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        assert rc == 0, (round_, log_tail(daemon.log))
        assert not os.path.exists(daemon.sock)
        assert not os.path.exists(daemon.pidfile)


def wait_for_main(proc, timeout: float = 30.0) -> bool:
    """Waits until the daemon's main thread holds SIGTERM, SIGINT and
    SIGHUP blocked (its first step), or has got past that; True if the
    blocked mask was seen."""
    held = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGHUP - 1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                blocked = next(int(l.split()[1], 16) for l in f if l.startswith("SigBlk:"))
        except (OSError, StopIteration):
            continue
        if blocked & held == held:
            return True
        if os.path.exists(f"/proc/{proc.pid}/fd") and len(os.listdir(f"/proc/{proc.pid}/task")) > 1:
            return False  # threads already: past the first step
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_during_start_up_is_a_clean_stop(berth_factory, sig):
    """A stop signal that comes at any moment after `main` began (here: as
    soon as it holds the signals, long before the socket exists) ends the
    daemon cleanly once start-up is done, never by the default action."""
    daemon = berth_factory()
    for round_ in range(5):
        proc = daemon.spawn()
        wait_for_main(proc)
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
        assert rc == 0, (round_, log_tail(daemon.log))
        assert not os.path.exists(daemon.sock)
        assert not os.path.exists(daemon.pidfile)


def test_a_reload_during_start_up_does_not_kill_the_daemon(berth_factory):
    """SIGHUP (a reload) sent as soon as `main` began is a reload once the
    daemon is up, not its default action, which would kill it."""
    daemon = berth_factory()
    for round_ in range(5):
        proc = daemon.spawn()
        wait_for_main(proc)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not os.path.exists(daemon.sock):
            assert proc.poll() is None, (round_, proc.returncode, log_tail(daemon.log))
            assert time.monotonic() < deadline, log_tail(daemon.log)
            time.sleep(0.01)
        time.sleep(0.2)
        assert proc.poll() is None, (round_, proc.returncode, log_tail(daemon.log))
        assert daemon.http("GET", "/_ping")[0] == 200
        assert daemon.stop() == 0


def test_restart_keeps_volumes(berth):
    status, _ = berth.api("POST", "/volumes/create", {"Name": "keep", "Labels": {"a": "b"}})
    assert status == 201
    _, before = berth.api("GET", "/volumes/keep")
    berth.restart()
    status, after = berth.api("GET", "/volumes/keep")
    assert status == 200
    assert after == before


def test_start_after_kill9_with_stale_socket_and_pidfile(berth):
    berth.api("POST", "/volumes/create", {"Name": "survivor"})
    berth.kill9()
    assert os.path.exists(berth.sock)  # a killed daemon cannot clean up
    berth.start()
    assert "survivor" in berth.list_volumes()
    with open(berth.pidfile) as f:
        assert int(f.read().strip()) == berth.pid


def test_socket_mode_0660(berth):
    st = os.stat(berth.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(stat.S_IMODE(st.st_mode))


# --------------------------------------------------------------------------
# system endpoints
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/_ping", "/v1.45/_ping", "/v1.24/_ping"])
def test_ping_get(berth, path):
    status, hdrs, body = berth.http("GET", path)
    assert status == 200
    assert body == b"OK"
    assert hdrs["Api-Version"] == "1.45"
    assert hdrs["Ostype"] == "linux"
    assert hdrs.get("Content-Type", "").startswith("text/plain")
    assert "no-cache" in hdrs.get("Cache-Control", "")
    assert hdrs.get("Pragma") == "no-cache"


def test_ping_head(berth):
    status, hdrs, body = berth.http("HEAD", "/_ping")
    assert status == 200
    assert body == b""
    assert hdrs["Api-Version"] == "1.45"
    assert hdrs["Ostype"] == "linux"
    assert hdrs.get("Content-Length") == "0"


def test_version_endpoint(berth):
    for path in ("/version", "/v1.24/version", "/v1.45/version"):
        status, v = berth.api("GET", path)
        assert status == 200, (path, v)
        assert v["ApiVersion"] == "1.45"
        assert v["MinAPIVersion"] == "1.24"
        assert v["Os"] == "linux"
        assert isinstance(v["Version"], str) and v["Version"]
        assert "Platform" in v and "Name" in v["Platform"]


def test_headers_on_every_response(berth):
    status, hdrs, _ = berth.http("GET", "/volumes")
    assert status == 200
    assert hdrs["Api-Version"] == "1.45"
    assert hdrs["Ostype"] == "linux"
    assert hdrs.get("Content-Type") == "application/json"


@pytest.mark.parametrize("path", ["/volumes", "/v1.45/volumes/create", "/anything/at/all"])
def test_options_any_route_is_200(berth, path):
    # moby registers OPTIONS /{anyroute:.*} -> 200 with an empty body (CORS
    # preflight).
    status, _, body = berth.http("OPTIONS", path)
    assert status == 200
    assert body == b""


def test_docker_version_and_info(berth):
    proc = berth.docker("version")
    assert "Server:" in proc.stdout
    out = berth.docker("version", "--format", "{{.Server.APIVersion}}").stdout
    assert out.strip() == "1.45"
    out = berth.docker("version", "--format", "{{.Server.MinAPIVersion}}").stdout
    assert out.strip() == "1.24"
    proc = berth.docker("info")
    assert "errors pretty printing info" not in proc.stderr
    assert "Server Version:" in proc.stdout
    info = json.loads(berth.docker("info", "--format", "{{json .}}").stdout)
    assert info["OSType"] == "linux"
    assert info["Swarm"]["LocalNodeState"] == "inactive"


def test_docker_system_df_empty(berth):
    out = berth.docker("system", "df").stdout
    assert "Local Volumes" in out


# --------------------------------------------------------------------------
# berth's own CLI
# --------------------------------------------------------------------------


def test_berth_cli_volume_commands(berth):
    assert berth.berth_cli("volume", "create", "bv1").stdout == "bv1\n"
    assert berth.berth_cli("volume", "create", "--label", "a=b", "-o", "type=tmpfs",
                           "-o", "device=tmpfs", "bv2").stdout == "bv2\n"
    anon = berth.berth_cli("volume", "create").stdout.strip()
    assert HEX64.match(anon)

    assert set(berth.berth_cli("volume", "ls", "-q").stdout.split()) == {"bv1", "bv2", anon}
    assert berth.berth_cli("volume", "ls", "-q", "--filter", "label=a=b").stdout.split() == ["bv2"]
    assert berth.berth_cli("volume", "ls", "-q", "-f", "name=bv1").stdout.split() == ["bv1"]
    table = berth.berth_cli("volume", "ls").stdout
    assert "bv1" in table and "local" in table
    rows = [json.loads(line) for line in
            berth.berth_cli("volume", "ls", "--format", "json").stdout.splitlines() if line]
    assert {r["Name"] for r in rows} == {"bv1", "bv2", anon}

    [v] = json.loads(berth.berth_cli("volume", "inspect", "bv2").stdout)
    assert v["Name"] == "bv2"
    assert v["Driver"] == "local"
    assert v["Labels"] == {"a": "b"}
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs"}
    assert v["Mountpoint"] == berth.mountpoint("bv2")

    proc = berth.berth_cli("volume", "inspect", "nosuch", check=False)
    assert proc.returncode != 0
    assert "no such volume" in proc.stderr

    out = berth.berth_cli("volume", "prune", "-f").stdout
    assert anon in out
    assert set(berth.berth_cli("volume", "ls", "-q").stdout.split()) == {"bv1", "bv2"}
    out = berth.berth_cli("volume", "prune", "-f", "-a").stdout
    assert "bv1" in out and "bv2" not in out  # bv2 has driver options

    assert berth.berth_cli("volume", "rm", "bv2").stdout == "bv2\n"
    proc = berth.berth_cli("volume", "rm", "nosuch", check=False)
    assert proc.returncode != 0
    assert "get nosuch: no such volume" in proc.stderr
    assert berth.berth_cli("volume", "rm", "-f", "nosuch").returncode == 0
    assert berth.berth_cli("volume", "ls", "-q").stdout.split() == []
    assert berth.volume_dirs() == set()


def test_berth_cli_system_df_version_info(berth):
    berth.berth_cli("volume", "create", "dfvol")
    with open(os.path.join(berth.mountpoint("dfvol"), "blob"), "wb") as f:
        f.write(b"z" * (1024 * 1024))
    out = berth.berth_cli("system", "df", "-v").stdout
    assert "dfvol" in out
    assert "1.049MB" in out
    assert "Local Volumes" in berth.berth_cli("system", "df").stdout
    out = berth.berth_cli("version").stdout
    assert "1.45" in out
    berth.berth_cli("info")


def test_berth_cli_host_from_environment(berth):
    berth.berth_cli("volume", "create", "envvol")
    # BERTH_HOST first, then DOCKER_HOST.
    out = berth.berth_cli("volume", "ls", "-q", host=False,
                          env={"BERTH_HOST": berth.host,
                               "DOCKER_HOST": "unix:///nonexistent/docker.sock"}).stdout
    assert out.split() == ["envvol"]
    out = berth.berth_cli("volume", "ls", "-q", host=False,
                          env={"DOCKER_HOST": berth.host}).stdout
    assert out.split() == ["envvol"]


def test_berth_cli_unreachable_daemon_fails(berth):
    proc = berth.berth_cli("volume", "ls", host=False, check=False,
                           env={"BERTH_HOST": "unix:///nonexistent/berth.sock"})
    assert proc.returncode != 0
    assert proc.stderr.strip()
