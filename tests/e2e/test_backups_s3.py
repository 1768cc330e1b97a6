"""Backups to an S3-compatible object store (moto's server, on loopback,
started by the test): backup, restore and restic's view of the same
repository; the object store's keys never appear in logs, inspect, events
or the database in clear."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from tree_helpers import fill_sample, tree_digest

MOTO = os.path.join(os.path.dirname(sys.executable), "moto_server")
pytestmark = [
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic missing (scripts/setup)"),
    pytest.mark.skipif(not os.path.exists(MOTO), reason="moto[server] missing (tests/requirements.txt)"),
]

PASSWORD = "object store passphrase 7"
KEY_ID, SECRET = "AKIDBERTHTEST", "berth-s3-secret-value-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3():
    port = free_port()
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID,
                              aws_secret_access_key=SECRET, region_name="us-east-1")
        deadline = time.monotonic() + 20
        while True:
            try:
                client.create_bucket(Bucket="berth-backups")
                break
            except Exception:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_backup_and_restore_through_s3_keep_the_keys_secret(daemon, uniq, s3):
    vol, repo = f"{uniq}v", f"{uniq}s3"
    url = f"s3:{s3}/berth-backups/{uniq}"
    env = {"BERTH_REPO_PASSWORD": PASSWORD, "AWS_ACCESS_KEY_ID": KEY_ID,
           "AWS_SECRET_ACCESS_KEY": SECRET}
    daemon.docker("volume", "create", vol)
    fill_sample(daemon.mountpoint(vol), sparse_mib=16)
    # Without the keys the object store refuses, and nothing is recorded.
    p = daemon.berth_cli("backup", "repo", "init", repo, "--url", url, check=False,
                         env={"BERTH_REPO_PASSWORD": PASSWORD, "AWS_ACCESS_KEY_ID": "",
                              "AWS_SECRET_ACCESS_KEY": ""})
    assert p.returncode != 0 and "needs its keys" in p.stderr, p.stderr
    assert daemon.api("GET", f"/berth/v1/backup/repos/{repo}")[0] == 404
    # A bucket that does not exist: the store's answer, and nothing recorded.
    p = daemon.berth_cli("backup", "repo", "init", repo, "--url", f"s3:{s3}/no-such-bucket/x",
                         check=False, env=env)
    assert p.returncode != 0 and "404" in p.stderr and "no-such-bucket" in p.stderr, p.stderr
    assert SECRET not in p.stderr
    assert daemon.api("GET", f"/berth/v1/backup/repos/{repo}")[0] == 404
    daemon.berth_cli("backup", "repo", "init", repo, "--url", url, env=env)
    try:
        snap = daemon.berth_cli("volume", "backup", vol, "--repo", repo, env=env).stdout.strip()
        daemon.berth_cli("volume", "restore", "--from", f"{repo}:{snap}", f"{uniq}back", env=env)
        assert tree_digest(daemon.mountpoint(f"{uniq}back")) == tree_digest(daemon.mountpoint(vol))
        restic_env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, AWS_ACCESS_KEY_ID=KEY_ID,
                          AWS_SECRET_ACCESS_KEY=SECRET)
        listed = subprocess.run(["restic", "-r", url, "snapshots", "--json"], env=restic_env,
                                capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
        assert [s["id"] for s in json.loads(listed.stdout)] == [snap]
        # A second backup, then forget and prune delete objects; a full
        # check reads every pack back through ranged GETs.
        with open(os.path.join(daemon.mountpoint(vol), "more"), "wb") as f:
            f.write(os.urandom(1 << 20))
        second = daemon.berth_cli("volume", "backup", vol, "--repo", repo, env=env).stdout.strip()
        daemon.berth_cli("backup", "forget", repo, "--keep-last", "1", env=env)
        daemon.berth_cli("backup", "prune", repo, "--instant", env=env)
        left = daemon.api("GET", f"/berth/v1/backups?repo={repo}")[1]
        assert [b["Id"] for b in left] == [second]
        daemon.berth_cli("backup", "check", repo, "--read-data", env=env)
        verify = subprocess.run(["restic", "-r", url, "check", "--read-data"], env=restic_env,
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        status, body = daemon.api("GET", f"/berth/v1/backup/repos/{repo}")
        assert status == 200 and body["Kind"] == "s3"
        assert sorted(body["SecretOptions"]) == ["access_key_id", "secret_access_key"]
        shown = json.dumps(body)
        assert SECRET not in shown and KEY_ID not in shown and PASSWORD not in shown
        db = sqlite3.connect(os.path.join(daemon.root, "berth.db"))
        rows = db.execute("SELECT record, sealed FROM backup_repos").fetchall()
        db.close()
        for record, sealed in rows:
            for secret in (SECRET, KEY_ID, PASSWORD):
                assert secret not in record and secret.encode() not in bytes(sealed)
        with open(daemon.log, "rb") as f:
            log = f.read()
        assert SECRET.encode() not in log and PASSWORD.encode() not in log
        events = daemon.docker("events", "--since", "0", "--until", str(int(time.time()) + 1),
                               "--format", "{{json .}}").stdout
        assert repo in events and SECRET not in events and KEY_ID not in events
    finally:
        daemon.api("DELETE", f"/berth/v1/backup/repos/{repo}")
