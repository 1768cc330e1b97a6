"""Must-show 3: containers survive a restart of the berth daemon.

The daemon is stopped with SIGTERM (BerthDaemon.restart keeps the same
root); containers keep running in their shims, and the new daemon finds
them again: `ps` shows them, `wait` returns their exit code, `logs` are
complete. A container that ends while no daemon runs is shown as exited with
its code afterwards.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from busybox_image import berth_with_cleanup, import_busybox
from container_helpers import ps_status, wait_for_log


def ticker(ticks: int) -> str:
    """A script printing tick1..tick<ticks> 0.5 s apart, then "done" on
    stderr, exiting with code 5."""
    return (f"i=1; while [ $i -le {ticks} ]; do echo tick$i; i=$((i+1)); sleep 0.5; done; "
            "echo done >&2; exit 5")


def ticks_of(ticks: int) -> str:
    return "".join(f"tick{i}\n" for i in range(1, ticks + 1))


TICKS = 6
# ~3 s: six ticks 0.5 s apart, then exit code 5.
TICKER = ticker(TICKS)
EXPECTED_TICKS = ticks_of(TICKS)
# ~8 s, for a test that must find the container still running after the
# restart: room for a slow restart on a busy machine (another test worker,
# a build), with seconds to spare for the checks that follow it.
LONG_TICKS = 16
RESTART_BOUND_S = 5.0


@pytest.fixture
def name(daemon):
    n = "rs-" + uuid.uuid4().hex[:10]
    yield n
    if not daemon.running():
        daemon.start()
    daemon.api("DELETE", f"/containers/{n}?force=1&v=1")


def inspect(daemon, name) -> dict:
    [c] = json.loads(daemon.docker("inspect", name).stdout)
    return c


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_running_container_survives_restart(daemon, image, name):
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c", ticker(LONG_TICKS))
    wait_for_log(daemon, name, "tick1")
    before = inspect(daemon, name)
    pid = before["State"]["Pid"]
    assert before["State"]["Running"] and pid > 0

    t0 = time.monotonic()
    daemon.restart()
    restart_s = time.monotonic() - t0
    # Not a speed check: the container (LONG_TICKS × 0.5 s) must still be
    # running for the checks below to mean anything.
    assert restart_s < RESTART_BOUND_S, f"restart took {restart_s:.1f}s: the container may end first"

    # Still running, the same process.
    status = ps_status(daemon, name, all=False)
    assert status is not None and status.startswith("Up "), status
    after = inspect(daemon, name)
    assert after["State"]["Running"] is True
    assert after["State"]["Pid"] == pid
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["Id"] == before["Id"]
    assert process_alive(pid)

    # wait (from the new daemon) gets the real exit code.
    t0 = time.monotonic()
    p = daemon.docker("wait", name, timeout=30)
    assert p.stdout == "5\n"
    assert time.monotonic() - t0 > 0.5  # it was still running

    logs = daemon.docker("logs", name)
    assert logs.stdout == ticks_of(LONG_TICKS)  # every tick, once, in order
    assert logs.stderr == "done\n"
    st = inspect(daemon, name)["State"]
    assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 5, False)
    assert ps_status(daemon, name).startswith("Exited (5) ")


def test_logs_follow_after_restart(daemon, image, name):
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c", TICKER)
    wait_for_log(daemon, name, "tick1")
    daemon.restart()
    # Follow on the new daemon: streams until the container ends.
    p = daemon.docker("logs", "-f", name, timeout=30)
    assert p.stdout == EXPECTED_TICKS
    assert daemon.docker("wait", name).stdout == "5\n"


def test_container_ending_while_daemon_down(daemon, image, name):
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c",
                  "echo before; sleep 1; echo after; exit 9")
    wait_for_log(daemon, name, "before")
    pid = inspect(daemon, name)["State"]["Pid"]
    daemon.stop()
    assert not daemon.running()
    deadline = time.monotonic() + 15
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(pid), "container did not end while the daemon was down"
    time.sleep(0.3)  # let its shim record the exit

    daemon.start()
    status = ps_status(daemon, name)
    assert status is not None and status.startswith("Exited (9) "), status
    assert ps_status(daemon, name, all=False) is None
    st = inspect(daemon, name)["State"]
    assert (st["Status"], st["ExitCode"], st["Running"], st["Pid"]) == ("exited", 9, False, 0)
    assert st["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert daemon.docker("wait", name).stdout == "9\n"
    assert daemon.docker("logs", name).stdout == "before\nafter\n"


def test_stop_after_restart(daemon, image, name):
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c",
                  'trap "exit 21" TERM; echo ready; while true; do sleep 0.1; done')
    wait_for_log(daemon, name, "ready")
    daemon.restart()
    assert ps_status(daemon, name, all=False).startswith("Up ")
    daemon.docker("stop", name)
    assert daemon.docker("wait", name).stdout == "21\n"
    assert inspect(daemon, name)["State"]["ExitCode"] == 21


def test_rm_f_after_restart_kills_process(daemon, image, name):
    daemon.docker("run", "-d", "--name", name, image, "sleep", "300")
    deadline = time.monotonic() + 10
    while not inspect(daemon, name)["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = inspect(daemon, name)["State"]["Pid"]
    daemon.restart()
    daemon.docker("rm", "-f", name)
    assert ps_status(daemon, name) is None
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(pid)


def test_created_and_exited_containers_kept_across_restart(daemon, image, name):
    created, exited = name + "-created", name + "-exited"
    try:
        daemon.docker("create", "--name", created, image, "echo", "late")
        daemon.docker("run", "--name", exited, image, "sh", "-c", "echo x; exit 4", check=False)
        daemon.restart()
        assert ps_status(daemon, created) == "Created"
        assert ps_status(daemon, exited).startswith("Exited (4) ")
        assert daemon.docker("logs", exited).stdout == "x\n"
        # The created one can still be started.
        p = daemon.docker("start", "-a", created)
        assert p.stdout == "late\n"
    finally:
        for n in (created, exited):
            daemon.api("DELETE", f"/containers/{n}?force=1")


def test_daemon_sigkill_then_restart(daemon, image, name):
    daemon.docker("run", "-d", "--name", name, image, "sh", "-c", TICKER)
    wait_for_log(daemon, name, "tick1")
    daemon.kill9()
    daemon.start()
    status = ps_status(daemon, name)
    assert status is not None and (status.startswith("Up ") or status.startswith("Exited (5)")), status
    assert daemon.docker("wait", name, timeout=30).stdout == "5\n"
    assert daemon.docker("logs", name).stdout == EXPECTED_TICKS
