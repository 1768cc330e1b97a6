"""`berth volume migrate` (issue 13): two berth daemons in two network
namespaces that the test makes (ip netns + veth, addresses chosen here),
talking mutual TLS; a local and a thin volume holding everything a
filesystem records (20,000 small files, a 512 MiB file, a sparse 1 GiB
file, symlinks, hard links, xattrs, odd owners) arrive whole (the export
manifests of both sides are identical); the target imports only a stream
whose digest matches; `--move` removes the source only after the target
verified and only when no container uses it; a source daemon, a target
daemon or the link killed mid-transfer leaves the source intact and no
volume on the target, and the rerun succeeds."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from conftest import BERTH_BIN, BerthDaemon
from tree_helpers import MIB, fill_sample, tree_digest

PORT = 2376


class NetnsDaemon(BerthDaemon):
    """A berth daemon whose process lives in network namespace `ns`.
    `ip netns exec` mounts a sysfs of that namespace over /sys (in a mount
    namespace of its own), which hides the cgroup tree: it is mounted
    again there, so the daemon can run containers."""

    def __init__(self, ns: str, extra_args=()):
        super().__init__(extra_args=extra_args)
        self.ns = ns

    def argv(self):
        # `ip netns exec` copies the host's mounts into a mount namespace
        # of its own (a slave of the host's): other tests' volumes mounted
        # under /tmp would stay pinned there ("still open in another mount
        # namespace"), so every /tmp mount but this daemon's is dropped
        # from it, lazily, before the daemon starts.
        own = os.path.dirname(self.root.rstrip("/"))
        setup = (
            "mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup; "
            "awk '{print $5}' /proc/self/mountinfo | grep '^/tmp/' | "
            f"grep -v '^{own}' | sort -r | while read -r m; do umount -l \"$m\" 2>/dev/null; done; "
            'exec "$@"')
        return ["ip", "netns", "exec", self.ns, "sh", "-c", setup, "sh", *super().argv()]


def sh(*argv: str, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {p.stderr}")
    return p


class Pair:
    """Two namespaces joined by a veth pair; a daemon in each; the target
    serves mutual TLS on its address."""

    def __init__(self, tag: str):
        self.tag = tag
        self.ns_a, self.ns_b = f"bm{tag}a", f"bm{tag}b"
        self.veth_a, self.veth_b = f"bm{tag}a", f"bm{tag}b"
        octet = int(tag[:2], 16) % 250 + 1
        self.addr_a, self.addr_b = f"10.231.{octet}.1", f"10.231.{octet}.2"
        self.certs = tempfile.mkdtemp(prefix="berth-mig-", dir="/tmp")
        self.daemons: list[NetnsDaemon] = []

    def up(self):
        sh("ip", "netns", "add", self.ns_a)
        sh("ip", "netns", "add", self.ns_b)
        sh("ip", "link", "add", self.veth_a, "netns", self.ns_a, "type", "veth",
           "peer", "name", self.veth_b, "netns", self.ns_b)
        for ns, dev, addr in ((self.ns_a, self.veth_a, self.addr_a),
                              (self.ns_b, self.veth_b, self.addr_b)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        p = subprocess.run([BERTH_BIN, "tls", "init", self.certs, "--name", self.addr_b],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        # Different default sizes for thin volumes made without one.
        self.source = self.daemon(self.ns_a, ["--thin-default-size", "256M"])
        self.target = self.daemon(self.ns_b, [
            "--thin-default-size", "128M", "--host", f"tcp://{self.addr_b}:{PORT}", "--tlsverify",
            "--tlscacert", f"{self.certs}/ca.pem", "--tlscert", f"{self.certs}/server-cert.pem",
            "--tlskey", f"{self.certs}/server-key.pem"])
        return self

    def daemon(self, ns: str, args: list[str]) -> NetnsDaemon:
        d = NetnsDaemon(ns, ["--thin-pool-size", "6G", *args])
        self.daemons.append(d)
        return d.start()

    def migrate(self, volume: str, *flags: str, timeout=600) -> subprocess.CompletedProcess:
        """`berth volume migrate` run in the source's namespace."""
        argv = ["ip", "netns", "exec", self.ns_a, BERTH_BIN, "-H", self.source.host,
                "volume", "migrate", volume, "--to", f"tcp://{self.addr_b}:{PORT}",
                "--tlscacert", f"{self.certs}/ca.pem", "--tlscert", f"{self.certs}/cert.pem",
                "--tlskey", f"{self.certs}/key.pem", *flags]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def link(self, up: bool):
        sh("ip", "-n", self.ns_a, "link", "set", self.veth_a, "up" if up else "down")

    def down(self):
        for d in self.daemons:
            d.cleanup()
        for ns in (self.ns_a, self.ns_b):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.certs, ignore_errors=True)


@pytest.fixture
def pair():
    p = Pair(uuid.uuid4().hex[:6])
    try:
        yield p.up()
    finally:
        p.down()


def fill_issue_sample(tree: str) -> None:
    """The issue's sample under `tree`: fill_sample's owners, modes, hard
    link, symlink, xattr, FIFO and a sparse 1 GiB file, plus 20,000 small
    files and a 512 MiB file of random bytes."""
    fill_sample(tree, sparse_mib=1024)
    small = os.path.join(tree, "small")
    for i in range(200):
        folder = os.path.join(small, f"d{i:03}")
        os.makedirs(folder)
        for j in range(100):
            with open(os.path.join(folder, f"f{j}"), "wb") as f:
                f.write(f"{i}/{j}\n".encode() * (j % 7 + 1))
    os.chown(os.path.join(small, "d007"), 65534, 4242)
    with open(os.path.join(tree, "big"), "wb") as f:
        for _ in range(512):
            f.write(os.urandom(MIB))
    os.symlink("big", os.path.join(tree, "big-link"))
    os.link(os.path.join(tree, "big"), os.path.join(tree, "big-hard"))


def manifest(daemon: BerthDaemon, volume: str) -> dict:
    """The manifest of a volume's export, extracted by GNU tar."""
    d = tempfile.mkdtemp(prefix="berth-mig-out-", dir="/var/tmp")
    try:
        tar = os.path.join(d, "x.tar")
        daemon.berth_cli("volume", "export", volume, "-o", tar)
        out = os.path.join(d, "x")
        os.makedirs(out)
        sh("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", out, "-xpf", tar)
        return tree_digest(out)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def volumes(daemon: BerthDaemon) -> list[str]:
    status, body = daemon.api("GET", "/volumes")
    assert status == 200, body
    return sorted(v["Name"] for v in body["Volumes"] or [])


def inspect(daemon: BerthDaemon, name: str) -> dict:
    status, body = daemon.api("GET", f"/volumes/{name}")
    assert status == 200, body
    return body


@pytest.mark.parametrize("driver", ["local", "thin"])
def test_migrate_arrives_whole_over_mutual_tls(pair, driver):
    # The sample is written into a local volume's folder; a thin volume
    # gets it through berth's own export and import.
    pair.source.berth_cli("volume", "create", "--label", "team=data", "seed")
    seed = inspect(pair.source, "seed")["Mountpoint"]
    fill_issue_sample(seed)
    tree = tree_digest(seed)
    if driver == "thin":
        with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
            tar = os.path.join(d, "seed.tar")
            pair.source.berth_cli("volume", "export", "seed", "-o", tar)
            pair.source.berth_cli("volume", "import", "--create", "-d", "thin", "-o", "size=3G",
                                  "--label", "team=data", "data", tar, timeout=600)
    else:
        pair.source.berth_cli("volume", "rename", "seed", "data")
    # What the target exports must be the sample as written, file by file.
    before = tree
    p = pair.migrate("data", "--name", "moved")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "moved"
    assert "migrated data to" in p.stderr
    got = inspect(pair.target, "moved")
    assert got["Driver"] == driver
    assert got["Labels"] == {"team": "data"}
    if driver == "thin":
        assert got["Options"] == {"size": "3G"}
    assert manifest(pair.target, "moved") == before
    # Without --move the source stays; the name on the target is taken now
    # (a thin copy could be brought up to date, but the export above mounted
    # it read-write there: it changed since the copy).
    assert "data" in volumes(pair.source)
    again = pair.migrate("data", "--name", "moved")
    refusal = "changed since" if driver == "thin" else "already exists on"
    assert again.returncode != 0 and refusal in again.stderr, again.stderr
    # Events on both sides: the export here, the create and import there.
    until = str(int(time.time()) + 1)
    seen = {}
    for side, d in (("source", pair.source), ("target", pair.target)):
        out = d.docker("events", "--since", "0", "--until", until, "--filter", "type=volume",
                       "--format", "{{.Action}} {{.Actor.ID}}").stdout.split("\n")
        seen[side] = set(out)
    assert "export data" in seen["source"], seen
    assert {"create moved", "import moved"} <= seen["target"], seen


def test_move_removes_the_source_only_when_no_container_uses_it(pair):
    from busybox_image import import_busybox, remove_all_containers
    image = import_busybox(pair.source, "mig-bb:v1")
    pair.source.berth_cli("volume", "create", "keep")
    pair.source.docker("create", "--name", "holder", "-v", "keep:/d", image, "true")
    p = pair.migrate("keep", "--move")
    # A container refers to it: the copy is verified, the source kept.
    assert p.returncode != 0 and "was kept" in p.stderr, p.stderr
    assert "keep" in volumes(pair.source)
    assert "keep" in volumes(pair.target)
    remove_all_containers(pair.source)
    # A thin volume made without a size goes with its own, not the
    # target pool's default.
    pair.source.berth_cli("volume", "create", "-d", "thin", "unsized")
    size = inspect(pair.source, "unsized")["Status"]["SizeBytes"]
    p = pair.migrate("unsized")
    assert p.returncode == 0, p.stderr
    assert inspect(pair.target, "unsized")["Options"] == {"size": str(size)}
    assert inspect(pair.target, "unsized")["Status"]["SizeBytes"] == size
    pair.source.berth_cli("volume", "create", "go")
    mountpoint = inspect(pair.source, "go")["Mountpoint"]
    with open(os.path.join(mountpoint, "f"), "w") as f:
        f.write("moved")
    p = pair.migrate("go", "--move")
    assert p.returncode == 0, p.stderr
    assert "go" not in volumes(pair.source)
    with open(os.path.join(inspect(pair.target, "go")["Mountpoint"], "f")) as f:
        assert f.read() == "moved"


def raw_import(daemon: BerthDaemon, name: str, chunks: list[bytes], trailer: str | None,
               announce=True) -> tuple[int, bytes]:
    """POST an import with a chunked body and an optional digest trailer,
    as a client nobody on the team wrote would (plain socket)."""
    path = (f"/berth/v1/volumes/{name}/import?create=1&exclusive=1&driver=local"
            "&opts=%7B%7D&labels=%7B%7D")
    head = (f"POST {path} HTTP/1.1\r\nHost: berth\r\nTransfer-Encoding: chunked\r\n"
            + ("Trailer: Berth-Content-Digest\r\n" if announce else "")
            + "Connection: close\r\n\r\n").encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n"
    if trailer is not None:
        body += f"Berth-Content-Digest: {trailer}\r\n".encode()
    body += b"\r\n"
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(daemon.sock)
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def small_tar() -> bytes:
    d = tempfile.mkdtemp(prefix="berth-mig-t-", dir="/tmp")
    try:
        with open(os.path.join(d, "f"), "w") as f:
            f.write("hello")
        return subprocess.run(["tar", "-C", d, "-cf", "-", "."], capture_output=True,
                              check=True).stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_the_target_imports_only_a_stream_whose_digest_matches(berth):
    import hashlib
    data = small_tar()
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    bad = "sha256:" + hashlib.sha256(data + b"x").hexdigest()
    half = [data[: len(data) // 2], data[len(data) // 2:]]
    status, body = raw_import(berth, "wrong", half, bad)
    assert status == 400 and b"does not match" in body, body
    status, body = raw_import(berth, "missing", half, None)
    assert status == 400 and b"did not send" in body, body
    assert volumes(berth) == []
    status, body = raw_import(berth, "right", half, good)
    assert status == 201, body
    # The answer confirms the digest checked: the CLI's proof for --move.
    assert b"berth-content-digest: " + good.encode() in body.lower(), body
    status, body = raw_import(berth, "right", half, good)
    assert status == 409, body
    with open(os.path.join(inspect(berth, "right")["Mountpoint"], "f")) as f:
        assert f.read() == "hello"
    # No trailer announced: an ordinary import --create, not verified, and
    # the answer confirms no digest.
    status, body = raw_import(berth, "plain", half, None, announce=False)
    assert status == 201, body
    assert b"berth-content-digest" not in body.lower(), body


def test_import_create_refuses_a_local_volume_on_a_device(berth):
    p = berth.berth_cli("volume", "import", "--create", "-o", "type=none", "-o", "o=bind",
                        "-o", "device=/var/tmp", "bound", "-", input="", check=False)
    assert p.returncode != 0 and "mount options" in p.stderr, p.stderr
    assert volumes(berth) == []


def slow_link(pair: Pair):
    """About 40 Mbit/s from the source: a transfer of 64 MiB takes ~13 s."""
    sh("ip", "netns", "exec", pair.ns_a, "tc", "qdisc", "add", "dev", pair.veth_a, "root",
       "tbf", "rate", "40mbit", "burst", "64kb", "latency", "400ms")


def random_volume(pair: Pair, name: str, mib: int = 64):
    pair.source.berth_cli("volume", "create", name)
    mountpoint = inspect(pair.source, name)["Mountpoint"]
    with open(os.path.join(mountpoint, "blob"), "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    return tree_digest(mountpoint)


def migrate_in_background(pair: Pair, name: str):
    result: dict = {}

    def run():
        result["p"] = pair.migrate(name, timeout=300)

    t = threading.Thread(target=run)
    t.start()
    return t, result


def wait_until(what, check, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def target_has_staging(pair: Pair) -> bool:
    """Whether the target has begun receiving (its import made storage)."""
    return os.path.isdir(os.path.join(pair.target.root, "volumes", "cut"))


@pytest.mark.parametrize("cut", ["source", "target", "link"])
def test_a_transfer_cut_short_leaves_the_source_whole_and_nothing_on_the_target(pair, cut):
    before = random_volume(pair, "cut")
    slow_link(pair)
    t, result = migrate_in_background(pair, "cut")
    wait_until("the target to begin receiving", lambda: target_has_staging(pair), 60)
    time.sleep(3)
    if cut == "source":
        pair.source.kill9()
    elif cut == "target":
        pair.target.kill9()
    else:
        pair.link(False)
    if cut == "link":
        # With the link still down the target must notice the dead client
        # by itself (TCP keep-alive), well before its 300 s stall limit,
        # and roll the import back.
        wait_until("the target to drop the half volume while the link is down",
                   lambda: not target_has_staging(pair), 150)
    t.join(timeout=200)
    assert not t.is_alive()
    assert result["p"].returncode != 0, result["p"].stdout
    if cut == "source":
        pair.source.start()
    elif cut == "target":
        pair.target.start()
    else:
        pair.link(True)
    # The target keeps nothing of the broken upload (a creating row is
    # never listed: the storage folder is what would be left).
    wait_until("the target to drop the half volume",
               lambda: not target_has_staging(pair), 180)
    assert "cut" not in volumes(pair.target)
    assert tree_digest(inspect(pair.source, "cut")["Mountpoint"]) == before
    sh("ip", "netns", "exec", pair.ns_a, "tc", "qdisc", "del", "dev", pair.veth_a, "root")
    p = pair.migrate("cut")
    assert p.returncode == 0, p.stderr
    assert tree_digest(inspect(pair.target, "cut")["Mountpoint"]) == before
