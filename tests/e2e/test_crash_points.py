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
