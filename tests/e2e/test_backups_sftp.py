"""Backups over SFTP (berth's own SFTP backend): the repository's
`command` option runs OpenSSH's sftp-server directly (restic's
`sftp.command`), so the whole SFTP conversation is real without an sshd.
Backup, an incremental second backup, restore, forget and prune (files
removed over SFTP), a full check that reads every pack back, and restic
reading the same repository as a local folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from tree_helpers import MIB, fill_sample, tree_digest

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
pytestmark = [
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic missing (scripts/setup)"),
    pytest.mark.skipif(not os.path.exists(SFTP_SERVER),
                       reason="openssh-sftp-server missing (scripts/setup)"),
]

PASSWORD = "over the wire 9"
ENV = {"BERTH_REPO_PASSWORD": PASSWORD}


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="berth-sftp-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_backup_restore_prune_and_check_over_sftp(daemon, uniq, work):
    vol, repo = f"{uniq}v", f"{uniq}sftp"
    repo_dir = os.path.join(work, "repo")
    url = f"sftp:backup@example.invalid:{repo_dir}"
    daemon.docker("volume", "create", vol)
    fill_sample(daemon.mountpoint(vol), sparse_mib=8)
    with open(os.path.join(daemon.mountpoint(vol), "big"), "wb") as f:
        f.write(os.urandom(3 * MIB))  # several packs' worth of 32 KiB SFTP writes
    daemon.berth_cli("backup", "repo", "init", repo, "--url", url,
                     "-o", f"command={SFTP_SERVER}", env=ENV)
    try:
        assert os.path.isfile(os.path.join(repo_dir, "config"))
        assert len(os.listdir(os.path.join(repo_dir, "data"))) == 256
        first = daemon.berth_cli("volume", "backup", vol, "--repo", repo, env=ENV).stdout.strip()
        with open(os.path.join(daemon.mountpoint(vol), "added"), "wb") as f:
            f.write(os.urandom(MIB))
        second = daemon.berth_cli("volume", "backup", vol, "--repo", repo, env=ENV).stdout.strip()
        assert first != second
        daemon.berth_cli("volume", "restore", "--from", f"{repo}:{second}", f"{uniq}back", env=ENV)
        assert tree_digest(daemon.mountpoint(f"{uniq}back")) == tree_digest(daemon.mountpoint(vol))
        assert not [n for _, _, files in os.walk(repo_dir) for n in files if "-tmp-" in n]

        # restic reads what went over SFTP (the same files, as a local folder).
        env = dict(os.environ, RESTIC_PASSWORD=PASSWORD)
        listed = subprocess.run(["restic", "-r", repo_dir, "snapshots", "--json"], env=env,
                                capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
        assert sorted(s["id"] for s in json.loads(listed.stdout)) == sorted([first, second])

        daemon.berth_cli("backup", "forget", repo, "--keep-last", "1", env=ENV)
        daemon.berth_cli("backup", "prune", repo, env=ENV)
        left = daemon.api("GET", f"/berth/v1/backups?repo={repo}")[1]
        assert [b["Id"] for b in left] == [second]
        check = daemon.berth_cli("backup", "check", repo, "--read-data", env=ENV)
        assert check.returncode == 0, check.stderr
        verify = subprocess.run(["restic", "-r", repo_dir, "check", "--read-data"], env=env,
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        daemon.api("DELETE", f"/berth/v1/backup/repos/{repo}")


def test_an_sftp_server_that_cannot_start_is_a_clear_error(daemon, uniq, work):
    repo = f"{uniq}gone"
    p = daemon.berth_cli("backup", "repo", "init", repo, "--url", f"sftp:h:{work}/r",
                         "-o", f"command={work}/no-such-program", check=False, env=ENV)
    assert p.returncode != 0 and "no-such-program" in p.stderr, p.stderr
    assert daemon.api("GET", f"/berth/v1/backup/repos/{repo}")[0] == 404
    assert not os.path.exists(os.path.join(work, "r"))


HOSTILE_SERVER = r'''
import struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
def send(kind, body):
    out.write(struct.pack(">IB", len(body) + 1, kind) + body); out.flush()
def s(b): return struct.pack(">I", len(b)) + b
while True:
    head = inp.read(5)
    if len(head) < 5: break
    n, kind = struct.unpack(">IB", head)
    body = inp.read(n - 1)
    if kind == 1:  # INIT
        send(2, struct.pack(">I", 3)); continue
    rid = body[:4]
    if kind == 17:  # STAT: a file of a terabyte
        send(105, rid + struct.pack(">IQ", 1, 1 << 40))
    elif kind == 3:  # OPEN
        send(102, rid + s(b"h"))
    elif kind == 5:  # READ: more than asked
        send(103, rid + s(b"x" * 70000))
    elif kind == 11:  # OPENDIR
        send(102, rid + s(b"d"))
    elif kind == 12:  # READDIR: one key of a terabyte, then the end
        listed = globals().get("listed", 0); globals()["listed"] = listed + 1
        if listed % 2 == 0:
            attrs = struct.pack(">IQI", 1 | 4, 1 << 40, 0o100644)
            send(104, rid + struct.pack(">I", 1) + s(b"a" * 64) + s(b"-") + attrs)
        else:
            send(101, rid + struct.pack(">I", 1) + s(b"") + s(b""))
    else:
        send(101, rid + struct.pack(">I", 0) + s(b"") + s(b""))
'''


def test_a_hostile_sftp_server_gets_a_clear_error_not_the_daemon(daemon, uniq, work):
    script = os.path.join(work, "hostile.py")
    with open(script, "w") as f:
        f.write(HOSTILE_SERVER)
    repo = f"{uniq}hostile"
    p = daemon.berth_cli("backup", "repo", "add", repo, "--url", f"sftp:h:{work}/r",
                         "-o", f"command=python3 {script}", check=False, env=ENV)
    # rustic reads every key file and, when none can be read, says the
    # password is wrong: the refused terabyte surfaces as that.
    assert p.returncode != 0 and ("bytes" in p.stderr or "wrong password" in p.stderr), p.stderr
    assert daemon.api("GET", f"/berth/v1/backup/repos/{repo}")[0] == 404
    assert daemon.api("GET", "/_ping")[0] == 200, "the daemon is alive"


# A proxy between berth and sftp-server that sends the server's answers at
# RATE bytes a second: a repository far away, in one process.
THROTTLE = """
import os, subprocess, sys, threading, time
rate = float(sys.argv[1])
server = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
def requests():
    while True:
        data = os.read(0, 65536)
        if not data:
            server.stdin.close()
            return
        server.stdin.write(data)
threading.Thread(target=requests, daemon=True).start()
start, sent = time.monotonic(), 0
while True:
    data = os.read(server.stdout.fileno(), 65536)
    if not data:
        break
    os.write(1, data)
    sent += len(data)
    ahead = sent / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""


def test_a_client_that_goes_away_stops_a_restore_at_once(daemon, uniq, work):
    """A restore (without the progress stream) from a slow repository
    whose client disconnects stops reading at once, not after the whole
    snapshot; it leaves no volume and logs no panic per job it stopped."""
    from conftest import UnixHTTPConnection, log_tail

    def du(path: str) -> int:
        return sum(os.lstat(os.path.join(top, f)).st_blocks * 512
                   for top, _, files in os.walk(path) for f in files)

    vol, repo, back = f"{uniq}v", f"{uniq}slow", f"{uniq}back"
    daemon.docker("volume", "create", vol)
    for i in range(20):
        with open(os.path.join(daemon.mountpoint(vol), f"r{i}"), "wb") as f:
            f.write(os.urandom(8 * MIB))
    throttle = os.path.join(work, "throttle.py")
    with open(throttle, "w") as f:
        f.write(THROTTLE)
    url = f"sftp:backup@example.invalid:{os.path.join(work, 'repo')}"
    command = f"command=python3 {throttle} {32 * MIB} {SFTP_SERVER}"
    daemon.berth_cli("backup", "repo", "init", repo, "--url", url, "-o", command, env=ENV)
    try:
        snap = daemon.berth_cli("volume", "backup", vol, "--repo", repo, env=ENV).stdout.strip()
        daemon.docker("volume", "rm", vol)
        logged = open(daemon.log, errors="replace").read().count("panicked")
        conn = UnixHTTPConnection(daemon.sock)
        body = json.dumps({"Repo": repo, "Snapshot": snap, "Volume": back}).encode()
        conn.request("POST", "/berth/v1/backups/restore", body=body,
                     headers={"Content-Type": "application/json"})
        storage = os.path.join(daemon.root, "volumes", back)
        deadline = time.monotonic() + 60
        while du(storage) < 16 * MIB:
            assert time.monotonic() < deadline, "the restore wrote nothing"
            time.sleep(0.02)
        conn.close()
        peak = 0
        while os.path.exists(storage):
            peak = max(peak, du(storage))
            assert time.monotonic() < deadline + 60, "the cancelled restore's volume stayed"
            time.sleep(0.02)
        print(f"restore cancelled: at most {peak >> 20} MiB of 160 written")
        # 160 MiB at 32 MiB/s: five seconds if it were not stopped.
        assert peak < 96 * MIB, (f"{peak >> 20} MiB of 160 written after the client left",
                                 log_tail(daemon.log))
        assert back not in daemon.list_volumes()
        after = open(daemon.log, errors="replace").read().count("panicked")
        assert after == logged, "a panic line per stopped job"
    finally:
        daemon.api("DELETE", f"/berth/v1/backup/repos/{repo}")
