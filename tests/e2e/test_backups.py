"""Backups of volumes into restic repositories (issue 12): incremental and
deduplicated, every version restorable exactly, readable by the restic CLI
(and restic's repositories by berth), secrets never shown, bad requests
refused with nothing changed, thin volumes backed up consistently while a
container writes."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import time

import pytest

from tree_helpers import MIB, fill_sample, tree_digest, write_mixed

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic missing (scripts/setup)")

PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="berth-backup-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def cli(d, *args, check=True, password=PASSWORD):
    return d.berth_cli(*args, check=check, env={"BERTH_REPO_PASSWORD": password})


def init_repo(d, name: str, path: str) -> None:
    cli(d, "backup", "repo", "init", name, "--url", path)
    # Its key files would let anyone who reads them guess the password.
    assert os.stat(path).st_mode & 0o777 == 0o700, oct(os.stat(path).st_mode)


def backup(d, volume: str, repo: str, *tags: str) -> str:
    args = ["volume", "backup", volume, "--repo", repo]
    for t in tags:
        args += ["--tag", t]
    return cli(d, *args).stdout.strip()


def backups(d, volume: str, repo: str) -> list[dict]:
    status, body = d.api("GET", f"/berth/v1/backups?volume={volume}&repo={repo}")
    assert status == 200, body
    return body


def restic(repo: str, *args, check=True):
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD)
    p = subprocess.run(["restic", "-r", repo, *args], capture_output=True, text=True, env=env)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def backup_under_way(d, volume: str, repo: str, repo_dir: str, written: int,
                     *flags: str, timeout: float = 30) -> subprocess.Popen:
    """Starts `berth volume backup` in the background and returns once it
    has written `written` bytes of packs into the repository."""
    argv = [d.bin, "-H", d.host, "volume", "backup", volume, "--repo", repo, *flags]
    running = subprocess.Popen(argv, env=dict(os.environ, BERTH_REPO_PASSWORD=PASSWORD),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while du(os.path.join(repo_dir, "data")) < written and running.poll() is None:
        assert time.monotonic() < deadline, "the backup wrote nothing"
        time.sleep(0.05)
    return running


def remove_repo(d, name: str) -> None:
    d.api("DELETE", f"/berth/v1/backup/repos/{name}")


def test_round_trip_keeps_everything_and_refuses_a_full_target(daemon, uniq, work):
    src, dst = f"{uniq}src", f"{uniq}dst"
    repo = f"{uniq}r"
    daemon.docker("volume", "create", "--label", "team=db", src)
    fill_sample(daemon.mountpoint(src))
    init_repo(daemon, repo, os.path.join(work, "repo"))
    try:
        snap = backup(daemon, src, repo, "first")
        assert len(snap) == 64
        listed = backups(daemon, src, repo)
        assert [b["Id"] for b in listed] == [snap]
        assert listed[0]["Tags"] == ["first"] and listed[0]["Volume"] == src
        assert listed[0]["Consistency"] == "unmounted"
        cli(daemon, "volume", "restore", "--from", f"{repo}:{snap[:8]}", dst)
        assert tree_digest(daemon.mountpoint(dst)) == tree_digest(daemon.mountpoint(src))
        sparse = os.stat(os.path.join(daemon.mountpoint(dst), "sparse"))
        assert sparse.st_blocks * 512 < 8 * MIB, "holes stay holes on restore"
        made = json.loads(daemon.docker("volume", "inspect", dst).stdout)[0]
        assert made["Labels"] == {"team": "db"}, "the recorded labels come back"
        # A volume that holds anything is not restored into; it is untouched.
        before = tree_digest(daemon.mountpoint(dst))
        p = cli(daemon, "volume", "restore", "--from", f"{repo}:{snap}", dst, check=False)
        assert p.returncode != 0 and "not empty" in p.stderr, p.stderr
        assert tree_digest(daemon.mountpoint(dst)) == before
        assert not [n for n in os.listdir(daemon.mountpoint(dst)) if n.startswith(".berth-import-")]
    finally:
        remove_repo(daemon, repo)


def test_incremental_backup_adds_only_what_changed(daemon, uniq, work):
    vol, repo = f"{uniq}big", f"{uniq}r"
    repo_dir = os.path.join(work, "repo")
    daemon.docker("volume", "create", vol)
    rng = random.Random(1712)
    names = [os.path.join(daemon.mountpoint(vol), n) for n in write_mixed(daemon.mountpoint(vol), 1.0, rng)]
    volume_bytes = du(daemon.mountpoint(vol))
    assert volume_bytes > 900 * MIB
    init_repo(daemon, repo, repo_dir)
    try:
        empty = du(repo_dir)
        t0 = time.monotonic()
        first = backup(daemon, vol, repo)
        first_time = time.monotonic() - t0
        after_first = du(repo_dir)
        changed = rng.sample(names, len(names) // 100)
        changed_bytes = 0
        for path in changed:
            size = os.path.getsize(path)
            with open(path, "wb") as f:
                f.write(rng.randbytes(size))
            changed_bytes += size
        t0 = time.monotonic()
        second = backup(daemon, vol, repo)
        second_time = time.monotonic() - t0
        added = du(repo_dir) - after_first
        print(f"first: {after_first - empty} bytes in {first_time:.1f} s; "
              f"changed {changed_bytes} bytes; second added {added} bytes in {second_time:.1f} s")
        # Incremental: what the second backup added is about what changed
        # (1% of the files), not the volume again. Its time is printed, not
        # asserted: timed tests never assert speed (another test worker or
        # a build makes times say nothing).
        assert 0.5 * changed_bytes < added < 2 * changed_bytes + 4 * MIB, (added, changed_bytes)
        entries = {b["Id"]: b for b in backups(daemon, vol, repo)}
        assert set(entries) == {first, second}
        assert entries[second]["DataAddedPacked"] < 2 * changed_bytes + 4 * MIB
    finally:
        remove_repo(daemon, repo)


def test_every_version_restores_exactly(daemon, uniq, work):
    vol, repo = f"{uniq}v", f"{uniq}r"
    daemon.docker("volume", "create", vol)
    root = daemon.mountpoint(vol)
    init_repo(daemon, repo, os.path.join(work, "repo"))
    versions = []
    try:
        fill_sample(root, sparse_mib=64)
        versions.append((backup(daemon, vol, repo), tree_digest(root)))
        os.remove(os.path.join(root, "hard"))
        with open(os.path.join(root, "sub/deep/data"), "r+b") as f:
            f.write(b"changed in place")
        os.makedirs(os.path.join(root, "new"))
        os.symlink("../sub", os.path.join(root, "new/up"))
        versions.append((backup(daemon, vol, repo), tree_digest(root)))
        os.chmod(os.path.join(root, "sub"), 0o700)
        os.chown(os.path.join(root, "new"), 99, 98)
        os.setxattr(os.path.join(root, "new"), "user.v", b"3")
        versions.append((backup(daemon, vol, repo), tree_digest(root)))
        for i, (snap, digest) in enumerate(versions):
            target = f"{uniq}r{i}"
            cli(daemon, "volume", "restore", "--from", f"{repo}:{snap}", target)
            assert tree_digest(daemon.mountpoint(target)) == digest, f"version {i + 1}"
    finally:
        remove_repo(daemon, repo)


def test_restic_reads_berths_backups_and_berth_restores_restics(daemon, uniq, work):
    vol, repo, theirs = f"{uniq}v", f"{uniq}r", f"{uniq}t"
    repo_dir = os.path.join(work, "repo")
    daemon.docker("volume", "create", vol)
    fill_sample(daemon.mountpoint(vol), sparse_mib=16)
    init_repo(daemon, repo, repo_dir)
    try:
        snap = backup(daemon, vol, repo, "nightly")
        listed = json.loads(restic(repo_dir, "snapshots", "--json").stdout)
        assert [s["id"] for s in listed] == [snap]
        assert set(listed[0]["tags"]) == {"berth", f"volume={vol}", "nightly"}
        assert "no errors were found" in restic(repo_dir, "check", "--read-data").stdout
        out = os.path.join(work, "out")
        restic(repo_dir, "restore", snap, "--target", out)
        assert tree_digest(os.path.join(out, vol)) == tree_digest(daemon.mountpoint(vol))
        # A repository restic made, with a backup restic took.
        their_dir, src = os.path.join(work, "theirs"), os.path.join(work, "src")
        os.makedirs(src)
        fill_sample(src, sparse_mib=16)
        restic(their_dir, "init")
        restic(their_dir, "backup", src)
        cli(daemon, "backup", "repo", "add", theirs, "--url", their_dir)
        p = cli(daemon, "volume", "restore", "--from", f"{theirs}:latest", check=False)
        assert p.returncode != 0 and "not made by berth" in p.stderr, p.stderr
        cli(daemon, "volume", "restore", "--from", f"{theirs}:latest", f"{uniq}fromrestic")
        assert tree_digest(daemon.mountpoint(f"{uniq}fromrestic")) == tree_digest(src)
    finally:
        remove_repo(daemon, repo)
        remove_repo(daemon, theirs)


def test_bad_requests_are_clear_and_change_nothing(daemon, uniq, work, image):
    repo, vol = f"{uniq}r", f"{uniq}v"
    repo_dir = os.path.join(work, "repo")
    daemon.docker("volume", "create", vol)
    cases = [
        (["backup", "repo", "add", repo, "--url", repo_dir], "no restic repository"),
        (["backup", "repo", "init", repo, "--url", "relative/path"], "absolute path"),
        (["backup", "repo", "init", "bad/name", "--url", repo_dir], "invalid backup repository name"),
        (["backup", "repo", "init", repo, "--url", repo_dir, "-o", "colour=red"], "takes no options"),
        (["backup", "repo", "init", repo, "--url", "s3:http://k:s@127.0.0.1:1/b"], "no credentials"),
    ]
    for args, words in cases:
        p = cli(daemon, *args, check=False)
        assert p.returncode != 0 and words in p.stderr, (args, p.stderr)
    assert daemon.api("GET", f"/berth/v1/backup/repos/{repo}")[0] == 404
    p = cli(daemon, "backup", "repo", "init", repo, "--url", repo_dir, check=False, password="")
    assert p.returncode != 0 and "password" in p.stderr
    init_repo(daemon, repo, repo_dir)
    try:
        p = cli(daemon, "backup", "repo", "init", f"{uniq}again", "--url", repo_dir, check=False)
        assert p.returncode != 0 and "already holds a restic repository" in p.stderr
        p = cli(daemon, "backup", "repo", "add", f"{uniq}wrong", "--url", repo_dir, check=False,
                password="not the password")
        assert p.returncode != 0 and "wrong password" in p.stderr, p.stderr
        assert daemon.api("GET", f"/berth/v1/backup/repos/{uniq}wrong")[0] == 404
        p = cli(daemon, "backup", "repo", "init", repo, "--url", os.path.join(work, "x"), check=False)
        assert p.returncode != 0 and "already known" in p.stderr
        for args, words in [
            (["volume", "backup", f"{uniq}nope", "--repo", repo], "no such volume"),
            (["volume", "backup", vol, "--repo", f"{uniq}nope"], "no such backup repository"),
            (["volume", "backup", vol, "--repo", repo, "--tag", "a,b"], "invalid tag"),
            (["volume", "restore", "--from", f"{repo}:deadbeef", f"{uniq}x"], "no backup deadbeef"),
            (["volume", "restore", "--from", "nocolon"], "REPO:SNAPSHOT"),
        ]:
            p = cli(daemon, *args, check=False)
            assert p.returncode != 0 and words in p.stderr, (args, p.stderr)
        assert daemon.api("GET", f"/volumes/{uniq}x")[0] == 404
        status, body = daemon.api("POST", f"/berth/v1/volumes/{vol}/backup", body=b"{not json",
                                  headers={"Content-Type": "application/json"})
        assert status == 400, body
        # A local volume a running container uses is not backed up.
        cid = daemon.docker("run", "-d", "-v", f"{vol}:/d", image, "sleep", "60").stdout.strip()
        p = cli(daemon, "volume", "backup", vol, "--repo", repo, check=False)
        daemon.docker("rm", "-f", cid)
        assert p.returncode != 0 and "in use" in p.stderr, p.stderr
        assert restic(repo_dir, "snapshots", "--json").stdout.strip() in ("[]", "null")
        # The password is nowhere in clear: not in inspect, the database,
        # the log or the events.
        status, body = daemon.api("GET", f"/berth/v1/backup/repos/{repo}")
        assert status == 200 and PASSWORD not in json.dumps(body)
        db = sqlite3.connect(os.path.join(daemon.root, "berth.db"))
        rows = db.execute("SELECT record, sealed FROM backup_repos").fetchall()
        db.close()
        assert rows and all(PASSWORD.encode() not in bytes(s) and PASSWORD not in r for r, s in rows)
        with open(daemon.log, "rb") as f:
            assert PASSWORD.encode() not in f.read()
        events = daemon.docker("events", "--since", "0", "--until", str(int(time.time()) + 1),
                               "--format", "{{json .}}").stdout
        assert repo in events and PASSWORD not in events
    finally:
        remove_repo(daemon, repo)


def test_forget_prune_and_check_find_corruption(daemon, uniq, work):
    vol, repo = f"{uniq}v", f"{uniq}r"
    repo_dir = os.path.join(work, "repo")
    daemon.docker("volume", "create", vol)
    init_repo(daemon, repo, repo_dir)
    try:
        snaps = []
        for i in range(4):
            with open(os.path.join(daemon.mountpoint(vol), f"f{i}"), "wb") as f:
                f.write(os.urandom(4 * MIB))
            snaps.append(backup(daemon, vol, repo))
        p = cli(daemon, "backup", "forget", repo, "--keep-last", "2")
        assert sorted(p.stdout.split()) == sorted(["removed"] * 2 + snaps[:2])
        assert [b["Id"] for b in backups(daemon, vol, repo)] == snaps[2:]
        p = cli(daemon, "backup", "forget", repo, check=False)
        assert p.returncode != 0 and "keep" in p.stderr
        for f in os.listdir(daemon.mountpoint(vol)):
            os.remove(os.path.join(daemon.mountpoint(vol), f))
        snaps.append(backup(daemon, vol, repo))
        cli(daemon, "backup", "forget", repo, "--keep-last", "1")
        before = du(repo_dir)
        status, pruned = daemon.api("POST", f"/berth/v1/backup/repos/{repo}/prune", {"Instant": True})
        assert status == 200, pruned
        freed = before - du(repo_dir)
        assert freed > 8 * MIB, "the forgotten data's space came back"
        # The report counts what went, repacked packs too.
        assert pruned["PacksRemoved"] > 0 and pruned["BytesRemoved"] > 8 * MIB, (pruned, freed)
        assert "no errors were found" in cli(daemon, "backup", "check", repo, "--read-data").stdout
        assert "no errors were found" in restic(repo_dir, "check").stdout
        # Corrupt one pack: check --read-data says so (and exits non-zero).
        with open(os.path.join(daemon.mountpoint(vol), "g"), "wb") as f:
            f.write(os.urandom(2 * MIB))
        backup(daemon, vol, repo)
        packs = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(repo_dir, "data")) for f in fs]
        victim = max(packs, key=os.path.getsize)
        with open(victim, "r+b") as f:
            f.seek(os.path.getsize(victim) // 2)
            f.write(b"\xff" * 64)
        p = cli(daemon, "backup", "check", repo, "--read-data", check=False)
        assert p.returncode != 0 and "error" in p.stderr.lower(), p.stdout + p.stderr
    finally:
        remove_repo(daemon, repo)


@pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs missing")
def test_thin_backup_while_a_container_appends_is_consistent(berth_factory, work):
    from busybox_image import import_busybox, remove_all_containers
    d = berth_factory(extra_args=["--thin-pool-size", "4G"]).start()
    image = import_busybox(d, "backup-thin:v1")
    repo = "thinrepo"
    try:
        d.docker("volume", "create", "-d", "thin", "-o", "size=256M", "busy")
        writer = d.docker("run", "-d", "-v", "busy:/d", image, "sh", "-c",
                          "i=0; while true; do i=$((i+1)); echo $i >> /d/seq; "
                          "[ $((i % 50)) = 0 ] && sync; done").stdout.strip()
        time.sleep(1.5)
        init_repo(d, repo, os.path.join(work, "repo"))
        snap = backup(d, "busy", repo)
        entry = backups(d, "busy", repo)[0]
        assert entry["Consistency"] == "snapshot" and entry["Driver"] == "thin"
        d.docker("rm", "-f", writer)
        status, snapshots = d.api("GET", "/berth/v1/volumes/busy/snapshots")
        assert status == 200 and snapshots == [], "the backup's snapshot is dropped"
        cli(d, "volume", "restore", "--from", f"{repo}:{snap}", "copy")
        made = json.loads(d.docker("volume", "inspect", "copy").stdout)[0]
        assert made["Driver"] == "thin" and made["Options"]["size"] == "256M"
        seq = d.docker("run", "--rm", "-v", "copy:/d", image, "cat", "/d/seq").stdout.split()
        numbers = [int(x) for x in seq]
        assert numbers and numbers == list(range(1, len(numbers) + 1)), "a gap-free prefix"
        image_path = os.path.join(d.root, "thin", "pool", "volumes", "copy.img")
        fsck = subprocess.run(["e2fsck", "-fn", image_path], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    finally:
        remove_all_containers(d)


@pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs missing")
@pytest.mark.parametrize("driver", ["local", "thin"])
def test_a_daemon_killed_mid_backup_leaves_a_valid_repository(berth_factory, work, driver):
    """kill -9 during a backup: the repository stays valid (no snapshot,
    `check` passes), the volume is not left in use, a thin volume's backup
    snapshot is dropped at the next start, and the next backup succeeds."""
    d = berth_factory(extra_args=["--thin-pool-size", "4G"]).start()
    repo, repo_dir = "crashrepo", os.path.join(work, "repo")
    opts = ["-d", "thin", "-o", "size=1G"] if driver == "thin" else []
    d.docker("volume", "create", *opts, "vol")
    status, body = d.api("GET", "/volumes/vol")
    root = body["Mountpoint"] if driver == "thin" else d.mountpoint("vol")
    if driver == "thin":  # a thin volume is mounted only while in use: fill it through a container
        from busybox_image import import_busybox
        image = import_busybox(d, "backup-crash:v1")
        d.docker("run", "--rm", "-v", "vol:/d", image, "sh", "-c",
                 "for i in $(seq 1 60); do dd if=/dev/urandom of=/d/f$i bs=1M count=8 2>/dev/null; done")
    else:
        for i in range(60):
            with open(os.path.join(root, f"f{i}"), "wb") as f:
                f.write(os.urandom(8 * MIB))
    init_repo(d, repo, repo_dir)
    running = backup_under_way(d, "vol", repo, repo_dir, 16 * MIB)
    d.kill9()
    running.wait(timeout=30)
    assert running.returncode != 0, "the backup was cut short"
    d.start()
    assert restic(repo_dir, "snapshots", "--json").stdout.strip() in ("[]", "null")
    assert "no errors were found" in restic(repo_dir, "check").stdout
    if driver == "thin":
        status, snaps = d.api("GET", "/berth/v1/volumes/vol/snapshots")
        assert status == 200 and snaps == [], snaps
        left = os.path.join(d.root, "thin", "mnt", ".snapshots")
        mounted = [line.split()[1] for line in open("/proc/mounts") if line.split()[1].startswith(left)]
        assert mounted == []
    snap = backup(d, "vol", repo)
    assert [b["Id"] for b in backups(d, "vol", repo)] == [snap]
    assert "no errors were found" in cli(d, "backup", "check", repo).stdout
    d.docker("volume", "rm", "vol")  # not left in use by the cut-short backup
    # kill -9 during a restore into a new volume: no volume is left.
    argv = [d.bin, "-H", d.host, "volume", "restore", "--from", f"{repo}:{snap}", "back"]
    restoring = subprocess.Popen(argv, env=dict(os.environ, BERTH_REPO_PASSWORD=PASSWORD),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = (os.path.join(d.root, "thin", "pool", "volumes", "back.img") if driver == "thin"
               else os.path.join(d.root, "volumes", "back"))

    def du(path: str) -> int:
        return os.stat(path).st_blocks * 512 if os.path.isfile(path) else globals()["du"](path)
    deadline = time.monotonic() + 60
    while du(storage) < 24 * MIB:
        assert restoring.poll() is None and time.monotonic() < deadline, "the restore wrote nothing"
        time.sleep(0.05)
    d.kill9()
    restoring.wait(timeout=30)
    d.start()
    assert "back" not in d.list_volumes()
    assert d.api("GET", "/volumes/back")[0] == 404
    assert not os.path.exists(storage), "the cut-short restore's storage went"


@pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs missing")
def test_a_restore_that_fills_the_disk_changes_nothing(berth_factory, work):
    """Restoring 96 MiB into an empty thin volume capped at 64 MiB: a clear
    error, and the volume is as empty as before (no half restore)."""
    d = berth_factory(extra_args=["--thin-pool-size", "2G"]).start()
    repo = "fullrepo"
    d.docker("volume", "create", "big")
    for i in range(12):
        with open(os.path.join(d.mountpoint("big"), f"f{i}"), "wb") as f:
            f.write(os.urandom(8 * MIB))
    init_repo(d, repo, os.path.join(work, "repo"))
    snap = backup(d, "big", repo)
    d.docker("volume", "create", "-d", "thin", "-o", "size=64M", "small")
    p = cli(d, "volume", "restore", "--from", f"{repo}:{snap}", "small", check=False)
    assert p.returncode != 0 and "space" in p.stderr.lower(), p.stderr
    from busybox_image import import_busybox
    image = import_busybox(d, "backup-full:v1")
    listing = d.docker("run", "--rm", "-v", "small:/d", image, "ls", "-A", "/d").stdout.split()
    assert listing == [], listing
    # A new volume that cannot be filled is not left behind.
    status, _ = d.api("GET", "/volumes/big")
    assert status == 200


@pytest.mark.parametrize("stream", [True, False], ids=["progress", "plain"])
def test_a_client_that_goes_away_cancels_the_backup(daemon, uniq, work, stream):
    """Closing the progress stream, or going away from a request without
    one, cancels the backup."""
    vol, repo = f"{uniq}v", f"{uniq}r"
    repo_dir = os.path.join(work, "repo")
    daemon.docker("volume", "create", vol)
    fill_random(daemon, vol, 320)
    init_repo(daemon, repo, repo_dir)
    try:
        from conftest import UnixHTTPConnection
        conn = UnixHTTPConnection(daemon.sock)
        body = json.dumps({"Repo": repo}).encode()
        query = "?progress=1" if stream else ""
        conn.request("POST", f"/berth/v1/volumes/{vol}/backup{query}", body=body,
                     headers={"Content-Type": "application/json"})
        if stream:
            resp = conn.getresponse()
            assert resp.status == 200
            first = json.loads(resp.readline())
            assert first["status"] == "Backing up", first
        deadline = time.monotonic() + 60
        while du(os.path.join(repo_dir, "data")) < 24 * MIB:
            assert time.monotonic() < deadline, "the backup wrote nothing"
            time.sleep(0.05)
        conn.close()
        # The backup stops: the volume's operation mount goes, no snapshot
        # is written, the repository is valid, the next backup works.
        # (rm waits for the backup's hold on the volume to end; a backup
        # that was not cancelled would have written its snapshot by then)
        daemon.docker("volume", "rm", vol, timeout=120)
        assert restic(repo_dir, "snapshots", "--json").stdout.strip() in ("[]", "null")
        assert "no errors were found" in restic(repo_dir, "check").stdout
    finally:
        remove_repo(daemon, repo)


def test_stop_containers_for_a_local_volume_and_start_them_again(daemon, uniq, work, image):
    vol, repo = f"{uniq}v", f"{uniq}r"
    daemon.docker("volume", "create", vol)
    init_repo(daemon, repo, os.path.join(work, "repo"))
    app = f"{uniq}app"
    daemon.docker("run", "-d", "--name", app, "-v", f"{vol}:/d", image,
                  "sh", "-c", "echo started >> /d/log; exec sleep 600")
    try:
        p = cli(daemon, "volume", "backup", vol, "--repo", repo, check=False)
        assert p.returncode != 0 and "in use" in p.stderr, p.stderr
        snap = cli(daemon, "volume", "backup", vol, "--repo", repo, "--stop-containers").stdout.strip()
        entry = next(b for b in backups(daemon, vol, repo) if b["Id"] == snap)
        assert entry["Consistency"] == "stopped" and entry["StoppedContainers"] == [app], entry
        state = daemon.docker("inspect", "-f", "{{.State.Running}}", app).stdout.strip()
        assert state == "true", "started again after the backup"
        assert open(os.path.join(daemon.mountpoint(vol), "log")).read().count("started") == 2
        # offen/docker-volume-backup's label stops a container without the flag.
        labelled = f"{uniq}lab"
        daemon.docker("rm", "-f", app)
        daemon.docker("run", "-d", "--name", labelled, "--label",
                      "docker-volume-backup.stop-during-backup=true", "-v", f"{vol}:/d", image, "sleep", "600")
        snap = backup(daemon, vol, repo)
        entry = next(b for b in backups(daemon, vol, repo) if b["Id"] == snap)
        assert entry["StoppedContainers"] == [labelled], entry
        assert daemon.docker("inspect", "-f", "{{.State.Running}}", labelled).stdout.strip() == "true"
    finally:
        remove_repo(daemon, repo)


def schedule_of(d, volume: str) -> dict | None:
    status, body = d.api("GET", f"/volumes/{volume}")
    assert status == 200, body
    return (body.get("Status") or {}).get("BackupSchedule")


def test_schedules_catch_up_once_after_a_restart_and_report_failures(berth_factory, work):
    d = berth_factory().start()
    repo_dir = os.path.join(work, "repo")
    d.docker("volume", "create", "sched")
    with open(os.path.join(d.mountpoint("sched"), "f"), "w") as f:
        f.write("data")
    init_repo(d, "srepo", repo_dir)
    for args, words in [
        (["--repo", "srepo"], "one of --every or --cron"),
        (["--repo", "srepo", "--every", "10s"], "shorter than a minute"),
        (["--repo", "srepo", "--cron", "61 * * * *"], "invalid cron"),
        (["--repo", "nope", "--every", "1h"], "no such backup repository"),
        (["--repo", "srepo", "--every", "1h", "--keep-last", "0"], "at least 1"),
    ]:
        p = cli(d, "volume", "backup-schedule", "sched", *args, check=False)
        assert p.returncode != 0 and words in p.stderr, (args, p.stderr)
    assert schedule_of(d, "sched") is None
    cli(d, "volume", "backup-schedule", "sched", "--repo", "srepo", "--every", "1h", "--keep-last", "2")
    s = schedule_of(d, "sched")
    assert s["EverySeconds"] == 3600 and s["LastRun"] is None and s["Failures"] == 0
    # Three runs missed while the daemon was down are caught up once.
    d.stop()
    db = sqlite3.connect(os.path.join(d.root, "berth.db"))
    record = json.loads(db.execute("SELECT record FROM backup_schedules").fetchone()[0])
    record["NextRun"] = int(time.time()) - 3 * 3600
    db.execute("UPDATE backup_schedules SET record = ?", (json.dumps(record),))
    db.commit()
    db.close()
    d.start()
    deadline = time.monotonic() + 60
    while (schedule_of(d, "sched") or {}).get("LastRun") is None:
        assert time.monotonic() < deadline, "the missed run was not caught up"
        time.sleep(0.3)
    time.sleep(3)
    s = schedule_of(d, "sched")
    assert s["LastRun"]["Snapshot"] and s["LastRun"]["Error"] is None and s["Failures"] == 0, s
    assert len(backups(d, "sched", "srepo")) == 1, "caught up once, not once per missed run"
    events = d.docker("events", "--since", "0", "--until", str(int(time.time()) + 1),
                      "--filter", "type=backup", "--format", "{{.Action}}").stdout.split()
    assert "scheduled" in events, events
    # A run that fails is counted and reported, and the schedule stays.
    shutil.rmtree(repo_dir)
    d.stop()
    db = sqlite3.connect(os.path.join(d.root, "berth.db"))
    record = json.loads(db.execute("SELECT record FROM backup_schedules").fetchone()[0])
    record["NextRun"] = int(time.time()) - 1
    db.execute("UPDATE backup_schedules SET record = ?", (json.dumps(record),))
    db.commit()
    db.close()
    d.start()
    deadline = time.monotonic() + 60
    while (schedule_of(d, "sched") or {}).get("Failures", 0) == 0:
        assert time.monotonic() < deadline, "the failed run was not recorded"
        time.sleep(0.3)
    s = schedule_of(d, "sched")
    assert s["LastRun"]["Error"] and "no restic repository" in s["LastRun"]["Error"], s
    assert s["Failures"] == 1
    events = d.docker("events", "--since", "0", "--until", str(int(time.time()) + 1),
                      "--filter", "type=backup", "--format", "{{.Action}}").stdout.split()
    assert "scheduled-failed" in events, events
    cli(d, "volume", "backup-schedule", "sched", "--remove")
    assert schedule_of(d, "sched") is None


def test_a_bind_volumes_backup_restores_into_a_plain_volume(daemon, uniq, work):
    """A local volume's type/device/o name this host's folders: a restore
    never recreates them (a backup from elsewhere, or altered, must not
    bind a host path); the data comes back into a plain volume."""
    host = os.path.join(work, "hostdir")
    os.makedirs(host)
    with open(os.path.join(host, "f"), "w") as f:
        f.write("bound")
    vol, repo = f"{uniq}bind", f"{uniq}r"
    daemon.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={host}", vol)
    init_repo(daemon, repo, os.path.join(work, "repo"))
    try:
        snap = backup(daemon, vol, repo)
        cli(daemon, "volume", "restore", "--from", f"{repo}:{snap}", f"{uniq}plain")
        made = json.loads(daemon.docker("volume", "inspect", f"{uniq}plain").stdout)[0]
        assert not made["Options"], made
        with open(os.path.join(daemon.mountpoint(f"{uniq}plain"), "f")) as f:
            assert f.read() == "bound"
        assert os.listdir(host) == ["f"]
    finally:
        remove_repo(daemon, repo)


@pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs missing")
def test_a_thin_volume_under_backup_is_in_use(berth_factory, work):
    """The backup reads a snapshot while the volume's containers run; the
    volume itself cannot be removed or renamed under it, and the backup
    prefix of snapshot names is berth's own."""
    from busybox_image import import_busybox
    d = berth_factory(extra_args=["--thin-pool-size", "4G"]).start()
    image = import_busybox(d, "backup-inuse:v1")
    d.docker("volume", "create", "-d", "thin", "-o", "size=1G", "tv")
    d.docker("run", "--rm", "-v", "tv:/d", image, "sh", "-c",
             "for i in $(seq 1 40); do dd if=/dev/urandom of=/d/f$i bs=1M count=8 2>/dev/null; done")
    p = d.berth_cli("volume", "snapshot", "create", "tv", "berth-backup-mine", check=False)
    assert p.returncode != 0 and "berth's own" in p.stderr, p.stderr
    repo_dir = os.path.join(work, "repo")
    init_repo(d, "inuse", repo_dir)
    running = backup_under_way(d, "tv", "inuse", repo_dir, 8 * MIB)
    rm = d.docker("volume", "rm", "tv", check=False)
    out, err = running.communicate(timeout=120)
    assert running.returncode == 0, err
    assert rm.returncode != 0 and "in use" in rm.stderr, rm.stderr
    entry = backups(d, "tv", "inuse")[0]
    assert entry["Files"] == 40, entry
    status, snaps = d.api("GET", "/berth/v1/volumes/tv/snapshots")
    assert snaps == []
    d.docker("volume", "rm", "tv")


def test_containers_stopped_for_a_backup_a_crash_cut_short_run_again(berth_factory, work):
    from busybox_image import import_busybox
    d = berth_factory().start()
    image = import_busybox(d, "backup-stopped:v1")
    d.docker("volume", "create", "app")
    for i in range(40):
        with open(os.path.join(d.mountpoint("app"), f"f{i}"), "wb") as f:
            f.write(os.urandom(8 * MIB))
    d.docker("run", "-d", "--name", "app1", "-v", "app:/d", image, "sleep", "600")
    repo_dir = os.path.join(work, "repo")
    init_repo(d, "stoprepo", repo_dir)
    running = backup_under_way(d, "app", "stoprepo", repo_dir, 16 * MIB, "--stop-containers",
                               timeout=60)
    assert d.docker("inspect", "-f", "{{.State.Running}}", "app1").stdout.strip() == "false"
    d.kill9()
    running.wait(timeout=30)
    d.start()
    deadline = time.monotonic() + 30
    while d.docker("inspect", "-f", "{{.State.Running}}", "app1").stdout.strip() != "true":
        assert time.monotonic() < deadline, "the stopped container was not started again"
        time.sleep(0.2)
    assert os.listdir(os.path.join(d.root, "backup", "stopped")) == []
    d.docker("rm", "-f", "app1")


def fill_random(d, vol: str, mib: int) -> None:
    for i in range(mib // 8):
        with open(os.path.join(d.mountpoint(vol), f"r{i}"), "wb") as f:
            f.write(os.urandom(8 * MIB))


def test_a_running_backup_neither_blocks_the_list_nor_restarts_what_its_user_stopped(
        daemon, uniq, work, image):
    """While a backup holds its repository, the repository's backups are
    listed at once; a container the backup stopped and its user then
    stopped stays stopped at the end, another is started again."""
    vol, repo = f"{uniq}v", f"{uniq}r"
    repo_dir = os.path.join(work, "repo")
    daemon.docker("volume", "create", vol)
    init_repo(daemon, repo, repo_dir)
    first = backup(daemon, vol, repo)
    fill_random(daemon, vol, 320)
    label = "docker-volume-backup.stop-during-backup=true"
    kept, other = f"{uniq}kept", f"{uniq}other"
    for name in (kept, other):
        daemon.docker("run", "-d", "--name", name, "--label", label, "-v", f"{vol}:/d", image,
                      "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    try:
        running = backup_under_way(daemon, vol, repo, repo_dir, 24 * MIB)
        assert running.poll() is None, "the backup ended before the test could look"
        begun = time.monotonic()
        listed = backups(daemon, vol, repo)
        took = time.monotonic() - begun
        assert running.poll() is None and took < 5, (
            f"the list waited for the backup ({took:.1f} s)")
        assert [b["Id"] for b in listed] == [first], listed
        # The user stops one of the containers the backup stopped.
        daemon.docker("stop", kept, check=False)
        out, err = running.communicate(timeout=120)
        assert running.returncode == 0, err
        entry = next(b for b in backups(daemon, vol, repo) if b["Id"] == out.strip())
        assert sorted(entry["StoppedContainers"]) == sorted([kept, other]), entry
        running_of = lambda n: daemon.docker(  # noqa: E731
            "inspect", "-f", "{{.State.Running}}", n).stdout.strip()
        assert running_of(kept) == "false", "its user stopped it during the backup"
        assert running_of(other) == "true", "started again after the backup"
    finally:
        daemon.docker("rm", "-f", kept, other, check=False)
        remove_repo(daemon, repo)


def sysfs_folder_with_unreadable_files() -> tuple[str, list[str]]:
    """A sysfs folder holding write-only attributes (`uevent`, ...), which
    even root cannot open for reading (EACCES)."""
    for bus in sorted(os.listdir("/sys/bus")):
        folder = os.path.join("/sys/bus", bus)
        unreadable = []
        for top, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(top, name)
                if os.path.islink(path):
                    continue
                try:
                    open(path, "rb").close()
                except PermissionError:
                    unreadable.append(path[len(folder):])
        if unreadable and len(unreadable) < 50:
            return folder, unreadable
    pytest.skip("no sysfs folder with write-only attributes")


def test_a_backup_that_could_not_read_everything_says_so(daemon, uniq, work):
    """rustic skips what it cannot read and still saves the snapshot (as
    restic does); berth names what is missing and exits 3 (restic's code
    for an incomplete snapshot), never reporting the backup whole."""
    folder, unreadable = sysfs_folder_with_unreadable_files()
    vol, repo = f"{uniq}sys", f"{uniq}r"
    daemon.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
                  f"device={folder}", vol)
    init_repo(daemon, repo, os.path.join(work, "repo"))
    try:
        p = cli(daemon, "volume", "backup", vol, "--repo", repo, check=False)
        assert p.returncode == 3, (p.returncode, p.stderr)
        snap = p.stdout.strip()
        (entry,) = [b for b in backups(daemon, vol, repo) if b["Id"] == snap]
        assert entry["Incomplete"] is True and entry["Tags"] == [], entry
        listed = cli(daemon, "volume", "backups", vol, "--repo", repo).stdout
        assert f"{snap[:8]} (incomplete)" in listed, listed
        # restic sees the mark too (a tag), and the repository is sound.
        tags = json.loads(restic(os.path.join(work, "repo"), "snapshots", "--json").stdout)[0]["tags"]
        assert "berth-incomplete" in tags, tags
        assert "no errors were found" in restic(os.path.join(work, "repo"), "check").stdout
        warning = p.stderr
        assert f"{len(unreadable)} of " in warning and "incomplete" in warning, warning
        for name in unreadable[:10]:
            assert name in warning, (name, warning)
        # A whole backup has no warning and exits 0.
        whole = f"{uniq}whole"
        daemon.docker("volume", "create", whole)
        with open(os.path.join(daemon.mountpoint(whole), "f"), "w") as f:
            f.write("x")
        p = cli(daemon, "volume", "backup", whole, "--repo", repo, check=False)
        assert p.returncode == 0 and "warning" not in p.stderr, p.stderr
        (entry,) = backups(daemon, whole, repo)
        assert entry["Incomplete"] is False, entry
    finally:
        remove_repo(daemon, repo)


def test_a_repository_inside_the_daemons_root_is_refused(daemon, uniq):
    for inside in (daemon.root, os.path.join(daemon.root, "volumes"),
                   os.path.join(daemon.root, "backup", "repo")):
        p = cli(daemon, "backup", "repo", "init", f"{uniq}in", "--url", inside, check=False)
        assert p.returncode != 0 and "inside the daemon's root" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(daemon.root, "volumes", "keys"))
    assert not os.path.exists(os.path.join(daemon.root, "backup", "repo"))
    status, body = daemon.api("GET", f"/berth/v1/backup/repos/{uniq}in")
    assert status == 404, body
