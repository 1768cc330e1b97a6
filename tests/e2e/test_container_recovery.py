"""Issue 15, defects 1, 2, 4 and 6: containers never leak, never outlive
their shim untracked, and get distinct generated names under load.

Each test reproduces a defect as it was found against the real daemon:

* a killed shim left its container running and writing to a volume that
  could then be removed (defect 2);
* crashes left --rm containers exited, orphan inits of cut starts, volume
  references and mount ids of containers that no longer exist, folders of
  no container (defect 1). The crash states are made exactly: the daemon is
  killed with -9 and its database row (or folder) is put in the state a
  crash at that instant leaves, then a restart must repair it;
* 50 threads creating unnamed containers got 409s and a 500 (defect 4);
* `kill` returned before the exit was recorded: ExitCode 0, `rm` 409
  (defect 6, first two items).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import uuid

from container_helpers import berth_shims, process_alive, wait_for_log, wait_until


def cgroup_pids(cid: str) -> list[int]:
    """Live processes in the container's cgroup (any v1/v2 hierarchy)."""
    pids: set[int] = set()
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        path = f"/sys/fs/cgroup/{hierarchy}/berth/{cid}/cgroup.procs"
        try:
            with open(path) as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    return sorted(p for p in pids if process_alive(p))


def inspect(daemon, name) -> dict:
    status, body = daemon.api("GET", f"/containers/{name}/json")
    assert status == 200, body
    return body


def file_size(daemon, volume, rel) -> int:
    return os.path.getsize(os.path.join(daemon.mountpoint(volume), rel))


# --- defect 2: a killed shim ------------------------------------------------


def test_killed_shim_ends_its_container_and_keeps_the_volume(daemon, image, uniq):
    vol, name = f"{uniq}-log", f"{uniq}-writer"
    daemon.docker("run", "-d", "--name", name, "-v", f"{vol}:/d", image, "sh", "-c",
                  "i=0; while true; do i=$((i+1)); echo $i >> /d/log; sleep 0.05; done")
    cid = inspect(daemon, name)["Id"]
    wait_until(lambda: os.path.exists(os.path.join(daemon.mountpoint(vol), "log")),
               what="the first write")
    [shim] = [pid for pid, c in berth_shims(daemon.root).items() if c == cid]
    os.kill(shim, signal.SIGKILL)

    state = wait_until(lambda: (s := inspect(daemon, name)["State"])["Status"] == "exited" and s,
                       what="the container to be reported exited")
    assert state["ExitCode"] == 255
    # Nothing of it runs on, nothing writes on.
    assert cgroup_pids(cid) == []
    size = file_size(daemon, vol, "log")
    time.sleep(0.5)
    assert file_size(daemon, vol, "log") == size, "something still writes to the volume"
    # The container still holds its volume; once removed, the volume goes.
    status, body = daemon.api("DELETE", f"/volumes/{vol}")
    assert status == 409, body
    assert daemon.api("DELETE", f"/containers/{name}")[0] == 204
    assert daemon.api("DELETE", f"/volumes/{vol}")[0] == 204


# --- defect 1: states a crash leaves, repaired at start-up ---------------------


def set_state(daemon, cid, **changes):
    """Edits a container's stored state while the daemon is down."""
    db = sqlite3.connect(daemon.db_path)
    try:
        (raw,) = db.execute("SELECT state FROM containers WHERE id = ?", (cid,)).fetchone()
        state = json.loads(raw)
        state.update(changes)
        db.execute("UPDATE containers SET state = ?, status = ? WHERE id = ?",
                   (json.dumps(state), state["status"], cid))
        db.commit()
    finally:
        db.close()


def test_exited_rm_container_is_removed_at_start_up(daemon, image, uniq):
    # A crash between recording the exit of a --rm container and removing it.
    name = f"{uniq}-rm"
    status, body = daemon.api("POST", f"/containers/create?name={name}", {
        "Image": image, "Cmd": ["true"], "HostConfig": {"AutoRemove": True}})
    assert status == 201, body
    cid = body["Id"]
    daemon.kill9()
    set_state(daemon, cid, status="exited", exit_code=0,
              started_at="2026-01-01T00:00:00.000000000Z",
              finished_at="2026-01-01T00:00:01.000000000Z")
    daemon.start()
    assert daemon.api("GET", f"/containers/{cid}/json")[0] == 404
    assert not os.path.exists(os.path.join(daemon.root, "containers", cid))


def test_cut_start_leaves_no_process_and_no_mount(daemon, image, uniq):
    # The daemon dies after the shim created the container (state
    # `starting`) — and, worse, after it had started it: both must end.
    vol, name = f"{uniq}-cut", f"{uniq}-cut"
    daemon.docker("run", "-d", "--name", name, "-v", f"{vol}:/d", image, "sleep", "300")
    cid = inspect(daemon, name)["Id"]
    assert cgroup_pids(cid)
    daemon.kill9()
    set_state(daemon, cid, status="starting")
    daemon.start()

    state = inspect(daemon, name)["State"]
    assert state["Status"] == "exited" and not state["Running"], state
    assert "starting" in state["Error"]
    assert cgroup_pids(cid) == []
    assert cid not in berth_shims(daemon.root).values()
    rootfs = os.path.join(daemon.root, "containers", cid, "rootfs")
    assert not os.path.ismount(rootfs)
    assert daemon.api("DELETE", f"/containers/{name}")[0] == 204
    assert daemon.api("DELETE", f"/volumes/{vol}")[0] == 204


def test_orphan_process_of_a_stopped_container_is_ended(daemon, image, uniq):
    # A record that says `created` while its init still runs (what a shim
    # that died mid-handshake left: 18 inits blocked for ever).
    name = f"{uniq}-orphan"
    daemon.docker("run", "-d", "--name", name, image, "sleep", "300")
    cid = inspect(daemon, name)["Id"]
    pids = cgroup_pids(cid)
    assert pids
    daemon.kill9()
    set_state(daemon, cid, status="created", pid=0, shim_pid=0, started_at=None)
    daemon.start()
    wait_until(lambda: cgroup_pids(cid) == [], what="the orphan to be ended")
    assert not any(process_alive(p) for p in pids)
    assert daemon.api("DELETE", f"/containers/{name}")[0] == 204


def test_holds_of_no_container_are_dropped_at_start_up(daemon, image, uniq):
    # A create cut between taking volume references and recording the
    # container, and a remove cut after the row went: references, mount ids
    # and a folder of containers that do not exist.
    vol = f"{uniq}-held"
    assert daemon.api("POST", "/volumes/create", {"Name": vol})[0] == 201
    ghost = uuid.uuid4().hex + uuid.uuid4().hex
    daemon.kill9()
    db = sqlite3.connect(daemon.db_path)
    try:
        db.execute("INSERT INTO volume_refs (volume, holder) VALUES (?, ?)", (vol, ghost))
        db.execute("INSERT INTO volume_mounts (volume, mount_id) VALUES (?, ?)", (vol, ghost))
        db.commit()
    finally:
        db.close()
    folder = os.path.join(daemon.root, "containers", ghost)
    os.makedirs(os.path.join(folder, "upper"))
    daemon.start()
    status, body = daemon.api("DELETE", f"/volumes/{vol}")
    assert status == 204, body
    assert not os.path.exists(folder)


# --- defect 4: generated names under load -------------------------------------


def test_concurrent_unnamed_creates_all_succeed_with_distinct_names(daemon, image):
    results: list[tuple[int, object]] = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            status, body = daemon.api("POST", "/containers/create",
                                      {"Image": image, "Cmd": ["true"]}, timeout=60)
            with lock:
                results.append((status, body))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        failures = [(s, b) for s, b in results if s != 201]
        assert len(results) == 500 and not failures, failures[:5]
        ids = {b["Id"] for _, b in results}
        status, listed = daemon.api("GET", "/containers/json?all=1")
        names = [c["Names"][0] for c in listed if c["Id"] in ids]
        assert len(names) == 500 and len(set(names)) == 500
    finally:
        for _, b in results:
            if isinstance(b, dict) and "Id" in b:
                daemon.api("DELETE", f"/containers/{b['Id']}?force=1")


# --- defect 6: kill settles before it answers ----------------------------------


def test_kill_answers_after_the_exit_is_recorded(daemon, image, uniq):
    for signal_arg in ("", "?signal=KILL"):
        name = f"{uniq}-k{len(signal_arg)}"
        daemon.docker("run", "-d", "--name", name, image, "sleep", "300")
        assert daemon.api("POST", f"/containers/{name}/kill{signal_arg}")[0] == 204
        state = inspect(daemon, name)["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 137, state
        assert daemon.api("DELETE", f"/containers/{name}")[0] == 204


def test_rm_force_racing_a_normal_exit_succeeds(daemon, image, uniq):
    for i in range(5):
        name = f"{uniq}-race{i}"
        daemon.docker("run", "-d", "--name", name, image, "sh", "-c", "echo up; sleep 0.3")
        wait_for_log(daemon, name, "up")
        time.sleep(0.28 + i * 0.01)
        status, body = daemon.api("DELETE", f"/containers/{name}?force=1")
        assert status == 204, body


def test_processes_moved_to_child_cgroups_die_with_the_container(daemon, image, uniq):
    """A container that may write its cgroups (writable-cgroups) moves a
    writer into a sub-group of its own cgroup: it must still be ended when
    the container exits, before its volume is released (outside tester's
    finding F1)."""
    vol, name = f"{uniq}-esc", f"{uniq}-esc"
    script = (
        "for h in pids freezer memory; do mkdir -p /sys/fs/cgroup/$h/sub; done; "
        "(exec >/dev/null 2>&1; while true; do echo w >> /d/log; sleep 0.1; done) & p=$!; "
        "for h in pids freezer memory; do echo $p > /sys/fs/cgroup/$h/sub/cgroup.procs; done; "
        "sleep 1; exit 0")
    daemon.docker("run", "-d", "--name", name, "--security-opt", "writable-cgroups=true",
                  "-v", f"{vol}:/d", image, "sh", "-c", script)
    cid = inspect(daemon, name)["Id"]
    wait_until(lambda: inspect(daemon, name)["State"]["Status"] == "exited", what="the exit")
    assert cgroup_pids(cid) == []
    log = os.path.join(daemon.mountpoint(vol), "log")
    size = os.path.getsize(log)
    time.sleep(0.5)
    assert os.path.getsize(log) == size, "a process in a sub-group still writes"
    assert daemon.api("DELETE", f"/containers/{name}")[0] == 204
    assert not any(os.path.exists(f"/sys/fs/cgroup/{h}/berth/{cid}") for h in ("pids", "memory"))
    assert daemon.api("DELETE", f"/volumes/{vol}")[0] == 204


def test_a_root_spelled_differently_keeps_containers_running(berth_factory):
    """The root is resolved to one spelling: a restart with `x/../root`
    finds the running containers again (finding F4)."""
    from busybox_image import import_busybox, remove_all_containers
    d = berth_factory().start()
    try:
        img = import_busybox(d, "spell-bb:v1")
        d.docker("run", "-d", "--name", "lr", img, "sleep", "60")
        d.stop()
        os.makedirs(os.path.join(d.dir, "other"), exist_ok=True)
        d.root = os.path.join(d.dir, "other", "..", "root")
        d.start()
        assert inspect(d, "lr")["State"]["Status"] == "running"
    finally:
        if d.running():
            remove_all_containers(d)
