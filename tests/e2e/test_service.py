"""Issue 16: berth as a service. The systemd units pass `systemd-analyze
verify`; the daemon takes its listening socket from systemd as systemd
hands it over (`LISTEN_FDS`, `LISTEN_PID`, the socket as descriptor 3),
serves the docker CLI on it, leaves the socket file (systemd's) in place
when it stops, and does not pass the variables on to containers;
`--validate` checks a configuration without starting anything."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from busybox_image import import_busybox
from conftest import BERTH_BIN, DOCKER_BIN

# With scripts/test's two pytest-xdist workers, the files of group "netpools"
# (test_readme.py, test_container_networks.py, test_service.py,
# test_daemon_config.py) never run at the same time: its socket-activated daemon
# has no --bridge/--bip (so `berth0`), and its default bridge comes from
# Docker's default address pools (172.17.0.0/16 and up): a daemon takes the
# first one no route of the host has, so two at once take the same one.
pytestmark = pytest.mark.xdist_group("netpools")

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "contrib" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart exists: point it at this build.
    service = (UNITS / "berth.service").read_text()
    assert "ExecStart=/usr/local/bin/berth daemon --host fd://" in service
    for line in ("Delegate=yes", "KillMode=process"):
        assert line in service.splitlines(), line
    (tmp_path / "berth.service").write_text(service.replace("/usr/local/bin/berth", BERTH_BIN))
    shutil.copy(UNITS / "berth.socket", tmp_path / "berth.socket")
    p = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        str(tmp_path / "berth.socket"), str(tmp_path / "berth.service")],
                       capture_output=True, text=True)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr


def socket_activated(sock_path: str, root: str, extra_env=None) -> subprocess.Popen:
    """Starts `berth daemon --host fd://` as systemd does: a listening unix
    socket as descriptor 3, LISTEN_FDS=1, LISTEN_PID the daemon's own PID
    (set by the shell that then execs the daemon, so the PID is the same)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(64)
    fd = listener.fileno()

    def as_descriptor_3():
        os.dup2(fd, 3)

    env = {**os.environ, "LISTEN_FDS": "1", **(extra_env or {})}
    script = 'export LISTEN_PID=$$; exec "$0" daemon --host fd:// --root "$1" --pidfile "$2"'
    proc = subprocess.Popen(["sh", "-c", script, BERTH_BIN, root, root + ".pid"], env=env,
                            pass_fds=(3,), preexec_fn=as_descriptor_3,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    listener.close()  # the daemon holds its copy
    return proc


def test_socket_activation_as_systemd_does_it():
    work = tempfile.mkdtemp(prefix="berth-fd-", dir="/tmp")
    sock = os.path.join(work, "api.sock")
    root = os.path.join(work, "root")
    proc = socket_activated(sock, root)
    host = "unix://" + sock
    try:
        deadline = time.monotonic() + 30
        while True:
            p = subprocess.run([DOCKER_BIN, "-H", host, "version", "--format", "{{.Server.Version}}"],
                               capture_output=True, text=True)
            if p.returncode == 0:
                break
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, p.stderr
            time.sleep(0.1)
        assert p.stdout.strip(), p
        # Containers do not inherit systemd's variables.

        class Daemon:  # what import_busybox needs
            pass
        d = Daemon()
        d.host, d.sock = host, sock
        d.docker = lambda *a, **k: subprocess.run([DOCKER_BIN, "-H", host, *map(str, a)],
                                                  capture_output=True, text=True, check=True)
        image = import_busybox(d, "fdtest:v1")
        env = subprocess.run([DOCKER_BIN, "-H", host, "run", "--rm", image, "env"],
                             capture_output=True, text=True, check=True).stdout
        assert "LISTEN_" not in env, env
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        stderr = proc.stderr.read()
        subprocess.run(["umount", "-R", "-l", root], capture_output=True)
        assert rc == 0, stderr
        # The socket is systemd's: still there after the daemon stopped.
        assert os.path.exists(sock)
        shutil.rmtree(work, ignore_errors=True)


def test_fd_host_without_systemd_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    p = subprocess.run([BERTH_BIN, "daemon", "--host", "fd://", "--root", str(tmp_path / "root"),
                        "--pidfile", str(tmp_path / "pid")], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    assert "needs a socket from systemd" in p.stderr, p.stderr
    assert not (tmp_path / "root").exists()  # refused before the root is touched
    wrong = subprocess.run([BERTH_BIN, "daemon", "--host", "fd://", "--root", str(tmp_path / "root"),
                            "--pidfile", str(tmp_path / "pid")], capture_output=True, text=True,
                           env={**env, "LISTEN_PID": "1", "LISTEN_FDS": "20"}, timeout=60)
    assert wrong.returncode == 1 and "LISTEN_PID is 1, not this process" in wrong.stderr, wrong.stderr


def test_validate_checks_without_starting(tmp_path):
    root = tmp_path / "never-made"
    ok = subprocess.run([BERTH_BIN, "daemon", "--validate", "--root", str(root)],
                        capture_output=True, text=True)
    assert (ok.returncode, ok.stdout.strip()) == (0, "configuration OK"), ok
    assert not root.exists()  # nothing created
    for flags, words in [
        (["--thin-pool-size", "64Q"], 'invalid --thin-pool-size: "64Q"'),
        (["--root", "relative/root"], "--root must be an absolute path"),
        (["--host", "tcp://0.0.0.0:2375"], "a tcp:// listener needs --tlsverify"),
        (["--host", "http://0.0.0.0:2375"], "unsupported host"),
        (["--log-format", "xml"], "invalid --log-format"),
        (["--runtime", "/no/such/runc"], "--runtime /no/such/runc: no such file"),
    ]:
        root_flag = [] if "--root" in flags else ["--root", str(root)]
        bad = subprocess.run([BERTH_BIN, "daemon", "--validate", *root_flag, *flags],
                             capture_output=True, text=True)
        assert bad.returncode == 1 and words in bad.stderr, (flags, bad.stderr)
    assert not root.exists()
