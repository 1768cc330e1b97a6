"""A crash between each two steps of a volume create, remove and prune.

The daemon is started with BERTH_CRASH_AT=<point> and kills itself with
SIGKILL when it reaches that point (berth_core::failpoint); the request in
flight gets no answer. It is then started again without the point, and the
state must be one of the two the request allowed, never anything between:

* ``volume-create-committed``: the row is durable, the folder not yet made.
  The create happened: the volume is there with its labels and an empty
  `_data`, and no warning claims anything was lost.
* ``volume-remove-retired``: the folder is in the trash, the delete not
  committed. The remove did not happen: the volume is back with its data.
* ``volume-remove-committed``: the delete committed, the trash not emptied.
  The remove happened: the volume is gone and its storage is destroyed.
* ``volume-prune-retired`` / ``volume-prune-committed``: the same for a
  prune of 40 volumes, all or none.

A remove's move to the trash is not synced before its commit (one durable
write per remove); the commit leaves a tombstone instead. A power cut after
the commit could undo the move and put the folder back under its name; the
tests below make that state by hand (kill at ``volume-remove-committed`` or
``volume-prune-committed``, then move the trash entries back) and start-up
must finish the removes, not adopt the folders.

In every case the list equals the folders under ROOT/volumes and the trash
empties.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from conftest import unix_http

ANON = "com.docker.volume.anonymous"


def create(berth, name: str, labels: dict | None = None) -> dict:
    body = {"Name": name, "Labels": labels or {}}
    status, data = berth.api("POST", "/volumes/create", body=body)
    assert status == 201, data
    return data


def fill(berth, name: str, content: bytes) -> None:
    with open(os.path.join(berth.mountpoint(name), "file"), "wb") as f:
        f.write(content)


def read(berth, name: str) -> bytes:
    with open(os.path.join(berth.mountpoint(name), "file"), "rb") as f:
        return f.read()


def request_dies(berth, method: str, path: str, body=None) -> None:
    """Sends a request the daemon must die in: no answer, process gone."""
    try:
        status, _, data = unix_http(berth.sock, method, path, body=body, timeout=30)
    except OSError:
        pass
    else:
        pytest.fail(f"{method} {path} answered {status} {data[:200]!r}; "
                    "the daemon should have died at the crash point")
    berth.proc.wait(timeout=15)
    assert berth.proc.returncode == -9, f"daemon exit {berth.proc.returncode}, not SIGKILL"


def crashed_then_restarted(berth, point: str, method: str, path: str, body=None):
    """Restarts `berth` armed with `point`, makes the request that dies
    there, restarts it unarmed."""
    berth.stop()
    berth.extra_env = {"BERTH_CRASH_AT": point}
    berth.start()
    request_dies(berth, method, path, body)
    berth.extra_env = {}
    berth.start()


def check_consistent(berth) -> dict:
    """The list equals the folders, each has its _data, the trash empties,
    and list warnings claim no loss. Returns the list."""
    listed = berth.list_volumes()
    assert set(listed) == berth.volume_dirs(), (
        f"list {sorted(listed)} != folders {sorted(berth.volume_dirs())}")
    for name in listed:
        assert os.path.isdir(berth.mountpoint(name)), f"{name} has no _data"
    assert not berth.wait_trash_empty(), f"trash left: {berth.trash_entries()}"
    status, data = berth.api("GET", "/volumes")
    assert status == 200
    assert not data.get("Warnings"), data
    return listed


@pytest.fixture
def daemon(berth_factory):
    return berth_factory().start()


def test_crash_after_create_commit_keeps_the_volume(daemon):
    crashed_then_restarted(daemon, "volume-create-committed", "POST", "/volumes/create",
                           {"Name": "cp-created", "Labels": {"k": "v"}})
    listed = check_consistent(daemon)
    assert listed["cp-created"]["Labels"] == {"k": "v"}
    assert os.listdir(daemon.mountpoint("cp-created")) == []
    # The volume is whole: usable and removable.
    fill(daemon, "cp-created", b"after")
    status, _ = daemon.api("DELETE", "/volumes/cp-created")
    assert status == 204


def test_crash_before_remove_commit_keeps_the_volume_and_its_data(daemon):
    create(daemon, "cp-kept", {"tier": "db"})
    fill(daemon, "cp-kept", b"precious")
    crashed_then_restarted(daemon, "volume-remove-retired", "DELETE", "/volumes/cp-kept")
    listed = check_consistent(daemon)
    assert listed["cp-kept"]["Labels"] == {"tier": "db"}
    assert read(daemon, "cp-kept") == b"precious"


def test_crash_after_remove_commit_finishes_the_remove(daemon):
    create(daemon, "cp-gone")
    fill(daemon, "cp-gone", b"x" * 65536)
    crashed_then_restarted(daemon, "volume-remove-committed", "DELETE", "/volumes/cp-gone")
    listed = check_consistent(daemon)
    assert "cp-gone" not in listed
    # The name is free for a new, empty volume.
    create(daemon, "cp-gone")
    assert os.listdir(daemon.mountpoint("cp-gone")) == []


@pytest.mark.parametrize("point,removed", [("volume-prune-retired", False),
                                           ("volume-prune-committed", True)])
def test_crash_in_a_prune_is_all_or_nothing(daemon, point, removed):
    names = [f"cp-prune-{i:02d}" for i in range(40)]
    for name in names:
        create(daemon, name, {ANON: ""})
        fill(daemon, name, name.encode())
    create(daemon, "cp-named")
    crashed_then_restarted(daemon, point, "POST", "/volumes/prune")
    listed = check_consistent(daemon)
    assert "cp-named" in listed, "a named volume is no prune candidate"
    if removed:
        assert not set(names) & set(listed), sorted(set(names) & set(listed))
    else:
        assert set(names) <= set(listed), sorted(set(names) - set(listed))
        assert all(read(daemon, n) == n.encode() for n in names)


def tombstones(berth) -> list[tuple[str, str]]:
    db = sqlite3.connect(berth.db_path, timeout=10)
    try:
        return db.execute("SELECT uid, name FROM volume_tombstones").fetchall()
    finally:
        db.close()


def wait_no_tombstones(berth, timeout: float = 15.0) -> list:
    deadline = time.monotonic() + timeout
    while (left := tombstones(berth)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def undo_moves_to_trash(berth, buried: list[tuple[str, str]]) -> None:
    """What a power cut after the commit may leave: each removed volume's
    folder back under its name (the move to the trash lost)."""
    for uid, name in buried:
        os.rename(os.path.join(berth.volumes_dir, ".trash", uid),
                  os.path.join(berth.volumes_dir, name))


@pytest.mark.parametrize("point", ["volume-remove-committed", "volume-prune-committed"])
def test_a_committed_remove_whose_move_a_power_cut_undid_stays_removed(daemon, point):
    names = [f"cp-buried-{i:02d}" for i in range(1 if point == "volume-remove-committed" else 20)]
    for name in names:
        create(daemon, name, {ANON: ""})
        fill(daemon, name, name.encode())
    create(daemon, "cp-kept")
    fill(daemon, "cp-kept", b"kept")
    daemon.stop()
    daemon.extra_env = {"BERTH_CRASH_AT": point}
    daemon.start()
    if point == "volume-remove-committed":
        request_dies(daemon, "DELETE", f"/volumes/{names[0]}")
    else:
        request_dies(daemon, "POST", "/volumes/prune")
    buried = tombstones(daemon)
    assert sorted(n for _, n in buried) == names, buried
    assert not set(names) & daemon.volume_dirs()
    undo_moves_to_trash(daemon, buried)
    assert set(names) <= daemon.volume_dirs()
    daemon.extra_env = {}
    daemon.start()
    listed = check_consistent(daemon)
    assert not set(names) & set(listed), sorted(set(names) & set(listed))
    assert read(daemon, "cp-kept") == b"kept"
    assert tombstones(daemon) == [], "start-up drops the tombstones it settled"


def test_tombstones_are_dropped_once_the_moves_are_synced(daemon):
    for i in range(5):
        create(daemon, f"cp-tomb-{i}")
    for i in range(5):
        status, _ = daemon.api("DELETE", f"/volumes/cp-tomb-{i}")
        assert status == 204
    assert wait_no_tombstones(daemon) == []
    assert not daemon.wait_trash_empty()


def test_a_name_removed_then_created_again_keeps_the_new_volume_across_a_crash(daemon):
    create(daemon, "cp-again", {"gen": "1"})
    fill(daemon, "cp-again", b"first")
    status, _ = daemon.api("DELETE", "/volumes/cp-again")
    assert status == 204
    create(daemon, "cp-again", {"gen": "2"})
    assert tombstones(daemon), "the remove's tombstone is still there"
    daemon.kill9()
    daemon.start()
    listed = check_consistent(daemon)
    assert listed["cp-again"]["Labels"] == {"gen": "2"}
    assert os.listdir(daemon.mountpoint("cp-again")) == []
    assert wait_no_tombstones(daemon) == []


def traced(berth, actions) -> list[str]:
    """The daemon's renames, mkdirs and fsyncs (with the paths of their
    descriptors) while `actions()` runs, in order."""
    import subprocess

    out = os.path.join(berth.dir, "strace.txt")
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-y", "-e", "trace=renameat2,mkdir,fsync,syncfs",
                               "-o", out, "-p", str(berth.proc.pid)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # every thread attached
        actions()
    finally:
        tracer.terminate()
        tracer.wait(timeout=15)
    with open(out) as f:
        return f.read().splitlines()


def test_a_remove_syncs_once_and_a_create_of_its_name_syncs_the_move_before_its_row(daemon):
    """The ordering the tombstones rely on, read from the syscalls: the
    remove's move is followed by one fsync, the WAL's; the create of the
    same name syncs `volumes/` before its own commit reaches the WAL."""
    create(daemon, "ord")
    fill(daemon, "ord", b"old")

    def remove_and_create_again():
        status, _ = daemon.api("DELETE", "/volumes/ord")
        assert status == 204
        create(daemon, "ord")

    lines = traced(daemon, remove_and_create_again)
    volumes = daemon.volumes_dir
    moved = next(i for i, l in enumerate(lines)
                 if "renameat2(" in l and f"{volumes}/ord" in l and "/.trash/" in l)
    syncs = [(i, l) for i, l in enumerate(lines) if i > moved and ("fsync(" in l or "syncfs(" in l)]
    wal = [i for i, l in syncs if "berth.db-wal>" in l]
    dir_syncs = [i for i, l in syncs if f"<{volumes}>" in l]
    assert len(wal) >= 2, "\n".join(lines[moved:])
    assert not [i for i in dir_syncs if i < wal[0]], (
        "the remove synced volumes/ before its commit:\n" + "\n".join(lines[moved:]))
    assert [i for i in dir_syncs if wal[0] < i < wal[1]], (
        "the create did not sync volumes/ before its commit:\n" + "\n".join(lines[moved:]))
    assert os.listdir(daemon.mountpoint("ord")) == []


def buried_with_an_unusable_trash(berth, name: str) -> str:
    """A committed remove of `name` whose move a power cut undid, and the
    trash made a file: start-up cannot move the folder. Returns the trash
    path. The daemon is left stopped."""
    create(berth, name)
    fill(berth, name, b"removed data")
    berth.stop()
    berth.extra_env = {"BERTH_CRASH_AT": "volume-remove-committed"}
    berth.start()
    request_dies(berth, "DELETE", f"/volumes/{name}")
    berth.extra_env = {}
    undo_moves_to_trash(berth, tombstones(berth))
    trash = os.path.join(berth.volumes_dir, ".trash")
    os.rmdir(trash)
    with open(trash, "w") as f:
        f.write("not a folder")
    return trash


def test_a_buried_folder_the_trash_cannot_take_is_removed_in_place(daemon):
    buried_with_an_unusable_trash(daemon, "cp-intrash")
    daemon.start()
    assert "cp-intrash" not in daemon.list_volumes()
    assert "cp-intrash" not in daemon.volume_dirs()
    assert tombstones(daemon) == []
    status, data = daemon.api("GET", "/volumes")
    # The unusable trash is reported; nothing was adopted.
    assert not [w for w in data.get("Warnings") or [] if "cp-intrash" in w], data


def test_a_buried_folder_that_cannot_go_keeps_its_name_from_new_volumes(daemon):
    """Neither moved nor removed at start-up (the trash unusable, a file
    in it immutable): the removed data stays, and the name is refused to
    new volumes until it is gone (a create would otherwise adopt it)."""
    import subprocess

    trash = buried_with_an_unusable_trash(daemon, "cp-stuck")
    stuck = os.path.join(daemon.mountpoint("cp-stuck"), "file")
    subprocess.run(["chattr", "+i", stuck], check=True)
    try:
        daemon.start()
        assert "cp-stuck" not in daemon.list_volumes()
        status, data = daemon.api("POST", "/volumes/create", body={"Name": "cp-stuck"})
        assert status == 409, (status, data)
        assert "still in place" in data["message"], data
        create(daemon, "cp-other")
        status, data = daemon.api("POST", "/berth/v1/volumes/cp-other/rename",
                                  body={"Name": "cp-stuck"})
        assert status == 409, (status, data)
        assert [n for _, n in tombstones(daemon)] == ["cp-stuck"]
    finally:
        subprocess.run(["chattr", "-i", stuck], check=True)
        daemon.stop()
        os.remove(trash)
    daemon.start()
    assert "cp-stuck" not in daemon.list_volumes()
    assert "cp-stuck" not in daemon.volume_dirs()
    create(daemon, "cp-stuck")
    assert os.listdir(daemon.mountpoint("cp-stuck")) == []


def test_a_filesystem_mounted_on_the_spare_folder_is_left_alone(daemon):
    import subprocess

    daemon.stop()
    src = os.path.join(daemon.dir, "src")
    os.makedirs(src)
    with open(os.path.join(src, "precious"), "w") as f:
        f.write("mine")
    spare = os.path.join(daemon.volumes_dir, ".spare")
    os.makedirs(spare, exist_ok=True)
    subprocess.run(["mount", "--bind", src, spare], check=True)
    try:
        daemon.start()
        create(daemon, "cp-nospare")
        assert os.listdir(daemon.mountpoint("cp-nospare")) == []
        assert os.listdir(src) == ["precious"]
    finally:
        daemon.stop()
        subprocess.run(["umount", spare], check=True)


def test_a_tombstone_of_a_name_in_an_unfinished_rename_waits_for_the_rename(daemon):
    """A removed name that a rename then took, the rename cut and its
    resumption failing at start-up (the database locked): the folder under
    the name is the renamed volume's data and must not go with the tombstone."""
    create(daemon, "cp-renamed")
    fill(daemon, "cp-renamed", b"renamed data")
    create(daemon, "cp-target")
    daemon.stop()
    daemon.extra_env = {"BERTH_CRASH_AT": "volume-remove-committed"}
    daemon.start()
    request_dies(daemon, "DELETE", "/volumes/cp-target")
    daemon.extra_env = {}
    # What a crash in the rename leaves: the journal row, the data moved.
    db = sqlite3.connect(daemon.db_path, timeout=10)
    db.execute("INSERT INTO volume_renames VALUES ('cp-renamed', 'cp-target')")
    db.commit()
    os.rename(os.path.join(daemon.volumes_dir, "cp-renamed"),
              os.path.join(daemon.volumes_dir, "cp-target"))
    db.execute("BEGIN IMMEDIATE")  # start-up cannot write: the rename cannot be resumed
    try:
        daemon.spawn()
        time.sleep(8)
    finally:
        db.rollback()
        db.close()
    daemon.kill9()
    assert read(daemon, "cp-target") == b"renamed data"
    assert [n for _, n in tombstones(daemon)] == ["cp-target"]
    daemon.start()
    listed = check_consistent(daemon)
    assert "cp-renamed" not in listed
    assert read(daemon, "cp-target") == b"renamed data"
    assert wait_no_tombstones(daemon) == []


def test_readers_never_see_a_volume_without_its_folder(daemon):
    """Inspect during creates and removes: a volume is either not there or
    there with its `_data` (the row is hidden while the folder is not in
    place)."""
    import threading

    stop = threading.Event()
    seen_bad: list[str] = []

    def poll():
        while not stop.is_set():
            for i in range(0, 200, 7):
                # The daemon answers an empty Mountpoint when it finds no
                # `_data` (checking the folder here would race the remove
                # that may follow the answer).
                status, data = daemon.api("GET", f"/volumes/rd{i:03d}")
                if status == 200 and not data["Mountpoint"]:
                    seen_bad.append(f"inspect rd{i:03d}: no Mountpoint")

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for t in pollers:
        t.start()
    try:
        for _round in range(3):
            for i in range(200):
                create(daemon, f"rd{i:03d}")
            for i in range(200):
                status, _ = daemon.api("DELETE", f"/volumes/rd{i:03d}")
                assert status == 204
    finally:
        stop.set()
        for t in pollers:
            t.join()
    assert not seen_bad, seen_bad[:5]


def test_an_unusable_trash_falls_back_to_removal_in_place(daemon):
    """`volumes/.trash` a file (or a symlink somebody planted): never
    followed; remove and prune still remove, in place."""
    daemon.stop()
    outside = os.path.join(daemon.dir, "precious")
    os.makedirs(outside)
    with open(os.path.join(outside, "keep"), "w") as f:
        f.write("mine")
    os.makedirs(daemon.volumes_dir, exist_ok=True)
    os.symlink(outside, os.path.join(daemon.volumes_dir, ".trash"))
    daemon.start()
    create(daemon, "ut-one")
    create(daemon, "ut-anon", {ANON: ""})
    status, _ = daemon.api("DELETE", "/volumes/ut-one")
    assert status == 204
    status, data = daemon.api("POST", "/volumes/prune")
    assert status == 200 and data["VolumesDeleted"] == ["ut-anon"], data
    assert set(daemon.list_volumes()) == set() == daemon.volume_dirs()
    assert os.listdir(outside) == ["keep"], "the symlinked folder was used"


def test_a_volume_with_a_mount_inside_is_not_removed(daemon):
    """Another filesystem mounted inside a volume's data: the remove is
    refused before anything is deleted, and the volume stays whole."""
    import subprocess

    create(daemon, "mi-vol")
    fill(daemon, "mi-vol", b"outside the mount")
    sub = os.path.join(daemon.mountpoint("mi-vol"), "sub")
    os.makedirs(sub)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", sub], check=True)
    try:
        status, data = daemon.api("DELETE", "/volumes/mi-vol")
        assert status >= 400, data
        assert "mounted inside" in str(data), data
        assert read(daemon, "mi-vol") == b"outside the mount"
        assert "mi-vol" in daemon.list_volumes()
        assert not daemon.trash_entries()
    finally:
        subprocess.run(["umount", sub], check=True)
    status, _ = daemon.api("DELETE", "/volumes/mi-vol")
    assert status == 204
