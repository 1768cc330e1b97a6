"""`berth volume clone` of a `local` volume (issue 5): a copy that keeps
owners, modes, links and holes, reports its progress as JSON lines (and as
a bar in the CLI on a terminal), stops and rolls back when the client goes
away, and refuses local volumes whose data is not in berth's folder."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import time

from conftest import _DOCKER_ENV_DROP as DOCKER_ENV_DROP, UnixHTTPConnection
from tree_helpers import MIB, fill_sample, tree_digest


def progress_lines(daemon, src: str, dst: str) -> list[dict]:
    status, hdrs, body = daemon.http("POST", f"/berth/v1/volumes/{src}/clone?progress=1",
                                     body={"Target": dst}, timeout=120)
    assert status == 200, body
    return [json.loads(line) for line in body.decode().splitlines()]


def test_clone_copies_everything_and_is_independent(daemon, uniq):
    src, dst = f"{uniq}src", f"{uniq}dst"
    daemon.docker("volume", "create", "--label", "k=v", src)
    fill_sample(daemon.mountpoint(src))
    assert daemon.berth_cli("volume", "clone", src, dst).stdout.strip() == dst
    assert tree_digest(daemon.mountpoint(dst)) == tree_digest(daemon.mountpoint(src))
    sparse = os.stat(os.path.join(daemon.mountpoint(dst), "sparse"))
    assert sparse.st_blocks * 512 < 8 * MIB, "holes stay holes"
    inspect = json.loads(daemon.docker("volume", "inspect", dst).stdout)[0]
    assert inspect["Driver"] == "local" and inspect["Labels"] == {"k": "v"}
    with open(os.path.join(daemon.mountpoint(dst), "sub/deep/data"), "r+b") as f:
        f.write(b"changed")
    with open(os.path.join(daemon.mountpoint(src), "sub/deep/data"), "rb") as f:
        assert f.read(7) != b"changed", "the clone is independent"


def test_progress_stream_is_docker_jsonmessage(daemon, uniq):
    src, dst = f"{uniq}src", f"{uniq}dst"
    daemon.docker("volume", "create", src)
    fill_sample(daemon.mountpoint(src))
    lines = progress_lines(daemon, src, dst)
    copying = [m for m in lines if m.get("status") == "Copying"]
    assert copying[0]["progressDetail"]["current"] == 0 and copying[0]["id"] == dst
    total = copying[0]["progressDetail"]["total"]
    assert total >= 515 * MIB  # apparent sizes: 3 MiB once (hard link), 512 MiB sparse
    currents = [m["progressDetail"]["current"] for m in copying]
    assert currents == sorted(currents) and all(c <= total for c in currents)
    assert lines[-1]["status"] == "Cloned" and lines[-1]["aux"]["Name"] == dst
    assert "error" not in json.dumps(lines)


def test_clone_errors_keep_their_status_codes(daemon, uniq):
    src = f"{uniq}src"
    daemon.docker("volume", "create", src)
    daemon.docker("volume", "create", f"{uniq}other")
    before = set(daemon.list_volumes())
    for target, code, words in [(src, 409, "already exists"), (f"{uniq}other", 409, "already exists"),
                                ("bad/name", 400, "bad/name")]:
        status, body = daemon.api("POST", f"/berth/v1/volumes/{src}/clone?progress=1",
                                  body={"Target": target})
        assert status == code and words in body["message"], (target, status, body)
    status, body = daemon.api("POST", f"/berth/v1/volumes/{uniq}none/clone?progress=1",
                              body={"Target": f"{uniq}x"})
    assert status == 404, body
    assert set(daemon.list_volumes()) == before


def test_local_volume_with_mount_options_is_refused(daemon, uniq):
    src = f"{uniq}tmpfs"
    daemon.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", src)
    before = daemon.volume_dirs()
    p = daemon.berth_cli("volume", "clone", src, f"{uniq}copy", check=False)
    assert p.returncode != 0 and "mount options" in p.stderr, p.stderr
    assert f"{uniq}copy" not in daemon.list_volumes() and daemon.volume_dirs() == before


def test_clone_is_refused_while_a_container_mounts_the_source(daemon, image, uniq):
    """The copy walks the source by path: a container could swap a file for a
    symlink to host data or for a FIFO meanwhile. So a local volume is not
    cloned while it is mounted; once the container stops, it is."""
    src, dst = f"{uniq}src", f"{uniq}dst"
    daemon.docker("volume", "create", src)
    with open(os.path.join(daemon.mountpoint(src), "f"), "wb") as f:
        f.write(b"kept")
    cid = daemon.docker("run", "-d", "--name", f"{uniq}holder", "-v", f"{src}:/d", image,
                        "sleep", "60").stdout.strip()
    before = daemon.volume_dirs()
    for path in (f"/berth/v1/volumes/{src}/clone", f"/berth/v1/volumes/{src}/clone?progress=1"):
        status, body = daemon.api("POST", path, body={"Target": dst})
        assert status == 409, (path, status, body)
        assert body["message"] == f"clone {src}: volume is in use - [{cid}]", body
    p = daemon.berth_cli("volume", "clone", src, dst, check=False)
    assert p.returncode != 0 and cid in p.stderr and "in use" in p.stderr, p.stderr
    assert dst not in daemon.list_volumes() and daemon.volume_dirs() == before
    daemon.docker("stop", "-t", "0", cid)
    assert daemon.berth_cli("volume", "clone", src, dst).stdout.strip() == dst
    with open(os.path.join(daemon.mountpoint(dst), "f"), "rb") as f:
        assert f.read() == b"kept"


def test_client_going_away_stops_the_copy_and_rolls_back(daemon, uniq):
    src, dst = f"{uniq}big", f"{uniq}half"
    daemon.docker("volume", "create", src)
    data = daemon.mountpoint(src)
    block = os.urandom(MIB)
    for i in range(2048):  # 2 GiB of real data: seconds to copy on this disk
        with open(os.path.join(data, f"f{i:04d}"), "wb") as f:
            f.write(block)
    conn = UnixHTTPConnection(daemon.sock, timeout=60)
    conn.request("POST", f"/berth/v1/volumes/{src}/clone?progress=1",
                 body=json.dumps({"Target": dst}), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    first = json.loads(resp.readline())
    assert first["status"] == "Copying" and first["progressDetail"]["current"] == 0
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    # The daemon logs the rollback once it is done; only then is the
    # target's absence telling (before, the copy may not have begun).
    def rolled_back() -> bool:
        with open(daemon.log, errors="replace") as f:
            return any("clone failed and was rolled back" in line and dst in line for line in f)

    deadline = time.monotonic() + 60
    while not rolled_back():
        assert time.monotonic() < deadline, "the daemon never logged the rollback"
        time.sleep(0.1)
    assert dst not in daemon.list_volumes(), "the half copy was rolled back"
    assert dst not in daemon.volume_dirs()
    lines = progress_lines(daemon, src, dst)  # and the name is free again
    assert lines[-1]["status"] == "Cloned"


def test_cli_draws_a_progress_bar_on_a_terminal(daemon, uniq):
    src, dst = f"{uniq}src", f"{uniq}dst"
    daemon.docker("volume", "create", src)
    data = daemon.mountpoint(src)
    block = os.urandom(MIB)
    for i in range(512):
        with open(os.path.join(data, f"f{i:03d}"), "wb") as f:
            f.write(block)
    env = {k: v for k, v in os.environ.items() if k not in DOCKER_ENV_DROP}
    env.update(TERM="xterm", COLUMNS="120")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([daemon.bin, "-H", daemon.host, "volume", "clone", src, dst],
                            stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    seen = b""
    try:
        while proc.poll() is None or select.select([leader], [], [], 0)[0]:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    break
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert proc.stdout.read().decode().strip() == dst
    text = seen.decode(errors="replace")
    assert f"cloning {src} to {dst}" in text and "MiB" in text, text[-500:]


def test_kill9_during_a_local_clone_leaves_no_half_volume(berth_factory):
    d = berth_factory().start()
    d.docker("volume", "create", "big")
    data = d.mountpoint("big")
    block = os.urandom(MIB)
    for i in range(1024):
        with open(os.path.join(data, f"f{i:04d}"), "wb") as f:
            f.write(block)
    want = tree_digest(data)
    outcomes = []
    for round_no, delay in enumerate((0.0, 0.05, 0.2, 0.5)):
        dst = f"copy{round_no}"
        conn = UnixHTTPConnection(d.sock, timeout=60)
        conn.request("POST", "/berth/v1/volumes/big/clone?progress=1",
                     body=json.dumps({"Target": dst}),
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200  # the copy has begun
        time.sleep(delay)
        d.kill9()
        conn.close()
        d.start()
        listed = dst in d.list_volumes()
        if listed:  # finished before the kill: then it is whole
            assert tree_digest(d.mountpoint(dst)) == want
        else:
            assert dst not in d.volume_dirs(), "a half copy was left on disk"
        outcomes.append(listed)
    assert not all(outcomes), "no kill landed during a copy"
    assert tree_digest(data) == want, "the source is untouched"
