"""`berth volume rename` and `berth volume update --label-add/--label-rm`:
a rename keeps data, driver, options, labels and creation time, is refused
while anything holds the volume, and is journalled, so a crash part way is
finished or undone at start-up (tested both by killing the daemon during a
stream of renames and by leaving each journal state on disk by hand)."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
import time

import pytest

from conftest import unix_http


def inspect(daemon, name):
    status, body = daemon.api("GET", f"/volumes/{name}")
    return body if status == 200 else None


def rename(daemon, old, new):
    return daemon.api("POST", f"/berth/v1/volumes/{old}/rename", body={"Name": new})


def test_rename_keeps_everything(daemon, uniq):
    old, new = f"{uniq}old", f"{uniq}new"
    daemon.docker("volume", "create", "--label", "team=a", "-o", "type=tmpfs",
                  "-o", "device=tmpfs", f"{uniq}opts")
    daemon.docker("volume", "create", "--label", "team=a", old)
    with open(os.path.join(daemon.mountpoint(old), "data"), "w") as f:
        f.write("payload")
    before = inspect(daemon, old)
    assert daemon.berth_cli("volume", "rename", old, new).stdout.strip() == new
    after = inspect(daemon, new)
    assert inspect(daemon, old) is None
    assert open(os.path.join(daemon.mountpoint(new), "data")).read() == "payload"
    for key in ("Driver", "Labels", "Options", "CreatedAt", "Scope"):
        assert after[key] == before[key], key
    assert after["Mountpoint"] == daemon.mountpoint(new)
    assert not os.path.exists(os.path.dirname(daemon.mountpoint(old)))
    # Options move too (a tmpfs volume keeps being one).
    daemon.berth_cli("volume", "rename", f"{uniq}opts", f"{uniq}opts2")
    assert inspect(daemon, f"{uniq}opts2")["Options"] == {"type": "tmpfs", "device": "tmpfs"}


def test_refusals_change_nothing(daemon, image, uniq):
    vol, other = f"{uniq}v", f"{uniq}other"
    daemon.docker("volume", "create", vol)
    daemon.docker("volume", "create", other)
    cid = daemon.docker("create", "-v", f"{other}:/d", image, "true").stdout.strip()
    cases = [
        (vol, other, 409, "already exists"),
        (vol, vol, 409, "already exists"),
        (vol, "bad/name", 400, "bad/name"),
        (f"{uniq}none", f"{uniq}x", 404, "no such volume"),
        (other, f"{uniq}x", 409, f"rename {other}: volume is in use - [{cid}]"),
    ]
    listed = set(daemon.list_volumes())
    dirs = daemon.volume_dirs()
    for old, new, code, words in cases:
        status, body = rename(daemon, old, new)
        assert status == code and words in body["message"], (old, new, status, body)
    assert set(daemon.list_volumes()) == listed and daemon.volume_dirs() == dirs


def test_thin_volume_rename_keeps_snapshots(berth_factory):
    from busybox_image import import_busybox, remove_all_containers
    d = berth_factory(extra_args=["--thin-pool-size", "2G"]).start()
    image = import_busybox(d, "rename-test:v1")
    try:
        d.docker("volume", "create", "-d", "thin", "-o", "size=128M", "db")
        d.docker("run", "--rm", "-v", "db:/d", image, "sh", "-c", "echo one > /d/f")
        d.berth_cli("volume", "snapshot", "create", "db", "s1")
        d.berth_cli("volume", "rename", "db", "db2")
        assert "s1" in d.berth_cli("volume", "snapshot", "ls", "db2").stdout
        assert d.docker("run", "--rm", "-v", "db2:/d", image, "cat", "/d/f").stdout == "one\n"
        d.docker("run", "--rm", "-v", "db2:/d", image, "sh", "-c", "echo two > /d/f")
        d.berth_cli("volume", "snapshot", "restore", "db2", "s1")
        assert d.docker("run", "--rm", "-v", "db2:/d", image, "cat", "/d/f").stdout == "one\n"
        pool = os.path.join(d.root, "thin", "pool", "volumes")
        assert sorted(os.listdir(pool)) == ["db2.img"]
    finally:
        remove_all_containers(d)


def test_labels_update(daemon, uniq):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", "--label", "a=1", "--label", "b=2", vol)
    daemon.berth_cli("volume", "update", "--label-add", "a=9", "--label-add", "c=3",
                     "--label-rm", "b", "--label-rm", "missing", vol)
    assert inspect(daemon, vol)["Labels"] == {"a": "9", "c": "3"}
    out = daemon.docker("volume", "ls", "-q", "--filter", "label=c=3").stdout.split()
    assert out == [vol]
    for body, words in (({"Add": {"": "x"}}, "invalid label key"),
                        ({"Nope": 1}, "unknown field")):
        status, resp = daemon.api("POST", f"/berth/v1/volumes/{vol}/labels", body=body)
        assert status == 400 and words in resp["message"], resp
    assert inspect(daemon, vol)["Labels"] == {"a": "9", "c": "3"}


def journal_and_move(d, old, new, move: bool):
    """Leaves what a crash between the journal row and the end leaves."""
    d.stop()
    db = sqlite3.connect(d.db_path)
    with db:
        db.execute("INSERT INTO volume_renames (volume, target) VALUES (?, ?)", (old, new))
    db.close()
    if move:
        os.rename(os.path.join(d.volumes_dir, old), os.path.join(d.volumes_dir, new))
    d.start()


@pytest.mark.parametrize("moved", [True, False])
def test_start_up_settles_a_journalled_rename(berth_factory, moved):
    d = berth_factory().start()
    d.docker("volume", "create", "--label", "k=v", "src")
    with open(os.path.join(d.mountpoint("src"), "f"), "w") as f:
        f.write("data")
    journal_and_move(d, "src", "dst", moved)
    kept, gone = ("dst", "src") if moved else ("src", "dst")
    assert set(d.list_volumes()) == {kept} and d.volume_dirs() == {kept}
    assert d.list_volumes()[kept]["Labels"] == {"k": "v"}
    assert open(os.path.join(d.mountpoint(kept), "f")).read() == "data"
    db = sqlite3.connect(d.db_path)
    assert db.execute("SELECT COUNT(*) FROM volume_renames").fetchone()[0] == 0
    db.close()
    said = "completed" if moved else "undone"
    assert f"an interrupted rename was {said}" in open(d.log).read()


def test_kill9_during_renames_loses_nothing(berth_factory):
    """Every rename acknowledged with 200 before a kill -9 is there after the
    restart; only a rename still in flight at the kill may go either way."""
    d = berth_factory().start()
    names = [f"r{i}" for i in range(8)]
    for n in names:
        d.docker("volume", "create", "--label", f"id={n}", n)
        with open(os.path.join(d.mountpoint(n), "id"), "w") as f:
            f.write(n)
    acked = {n: n for n in names}  # identity -> its last acknowledged name
    done: list[str] = []  # acknowledged renames, all rounds
    for round_no in range(12):
        stop = threading.Event()
        in_flight: dict[str, str] = {}  # identity -> the name asked for, no answer yet
        refused: list[tuple] = []  # answers other than 200 (none expected)

        def churn():
            while not stop.is_set():
                ident = random.choice(names)
                old = acked[ident]
                new = ident + ("b" if old == ident else "")
                in_flight[ident] = new
                try:
                    status, _, body = unix_http(d.sock, "POST", f"/berth/v1/volumes/{old}/rename",
                                                body={"Name": new}, timeout=5)
                except Exception:  # the daemon died under the request: outcome unknown
                    return
                if status == 200:
                    acked[ident] = new
                    done.append(new)
                else:
                    refused.append((old, new, status, body))
                del in_flight[ident]

        worker = threading.Thread(target=churn)
        worker.start()
        time.sleep(random.uniform(0.005, 0.12))
        d.kill9()
        stop.set()
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert not refused, f"round {round_no}: renames refused before the kill: {refused}"
        d.start()
        listed = d.list_volumes()
        assert set(listed) == d.volume_dirs(), f"round {round_no}: ls differs from disk"
        for ident in names:
            here = [n for n in (ident, ident + "b") if n in listed]
            assert len(here) == 1, f"round {round_no}: {ident} listed as {here}"
            (name,) = here
            allowed = {acked[ident], in_flight.get(ident, acked[ident])}
            assert name in allowed, (
                f"round {round_no}: {ident} is {name} after the restart, but its last "
                f"acknowledged name is {acked[ident]} (in flight: {in_flight.get(ident)})")
            assert listed[name]["Labels"] == {"id": ident}
            assert open(os.path.join(d.mountpoint(name), "id")).read() == ident
            acked[ident] = name
    assert len(done) > 12, f"only {len(done)} renames were acknowledged"


def test_anonymous_label_and_orphan_storage(daemon, uniq):
    """A renamed or cloned anonymous volume has a user's name: a plain prune
    keeps it. The anonymous label is berth's to set. Storage already under
    the new name (no volume lists it) is refused, not replaced."""
    status, body = daemon.api("POST", "/volumes/create", body={})
    assert status == 201, body
    anon = body["Name"]
    keep, copy = f"{uniq}keep-me", f"{uniq}copy-me"
    assert daemon.berth_cli("volume", "clone", anon, copy).stdout.strip() == copy
    assert daemon.berth_cli("volume", "rename", anon, keep).stdout.strip() == keep
    for name in (keep, copy):
        assert "com.docker.volume.anonymous" not in (inspect(daemon, name)["Labels"] or {}), name
    daemon.docker("volume", "prune", "-f")
    assert inspect(daemon, keep) is not None and inspect(daemon, copy) is not None
    status, body = daemon.api("POST", f"/berth/v1/volumes/{keep}/labels",
                              body={"Add": {"com.docker.volume.anonymous": ""}})
    assert status == 400 and "reserved" in body["message"], body
    orphan = os.path.join(daemon.volumes_dir, f"{uniq}orphan", "_data")
    os.makedirs(orphan)
    try:
        with open(os.path.join(orphan, "theirs"), "w") as f:
            f.write("kept")
        for path, body in ((f"/berth/v1/volumes/{keep}/rename", {"Name": f"{uniq}orphan"}),
                           (f"/berth/v1/volumes/{keep}/clone", {"Target": f"{uniq}orphan"})):
            status, resp = daemon.api("POST", path, body=body)
            assert status == 409 and "already has storage" in resp["message"], (path, status, resp)
        assert os.listdir(orphan) == ["theirs"]
        assert inspect(daemon, keep) is not None
    finally:
        shutil.rmtree(os.path.dirname(orphan))
