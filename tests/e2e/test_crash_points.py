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

In every case the list equals the folders under ROOT/volumes and the trash
empties.
"""

from __future__ import annotations

import os

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
