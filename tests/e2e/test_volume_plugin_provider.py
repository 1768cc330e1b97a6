"""Issue 14, provider side (must-show 4): berth serves its own drivers as
a Docker volume plugin (`berth daemon --serve-volume-plugin SOCKET`), and
a real dockerd (Debian's docker.io, started here with its own data root,
exec root, socket and plugin folder) uses them: `docker volume create -d
berth -o size=64M` makes a berth thin volume with its size cap, two Docker
containers share it, writing past the cap is ENOSPC inside the container,
`docker volume rm` of it in use is refused, a berth snapshot taken while a
Docker container writes is consistent, the volume stays mounted until
both containers unmount (across a restart of berth), and removing it
gives the pool its space back.

dockerd finds plugins only in /run/docker/plugins, so it runs in a mount
namespace of its own (`unshare -m --propagation slave`) where the test's
plugin folder is bound over that path. The berth daemon's folder is made
a shared mount first, so the volumes berth mounts later reach dockerd's
namespace (a slave of it); every other /tmp mount is dropped from that
namespace, so it pins no other test's volume."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time

import pytest

from busybox_image import import_busybox
from conftest import DockerDaemon

MIB = 1 << 20

pytestmark = [
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd missing (docker.io)"),
    pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs missing"),
]

DOCKERD_IN_NAMESPACE = """\
#!/bin/sh
# dockerd in a mount namespace of its own: its plugin folder bound over
# /run/docker/plugins; /tmp mounts other than KEEP's dropped (lazily).
exec unshare -m --propagation slave sh -c '
  awk "{print \\$5}" /proc/self/mountinfo | grep "^/tmp/" | grep -v "^$KEEP" | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  mount --bind "$PLUGINS" /run/docker/plugins || exit 97
  exec dockerd "$@"' sh "$@"
"""


def sh(*argv: str, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {p.stdout}{p.stderr}")
    return p


def is_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo", errors="surrogateescape") as f:
        return any(line.split()[4] == path for line in f)


def wait_for(what: str, check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture
def engines(berth_factory):
    """A berth daemon serving its plugin, and a dockerd that sees it."""
    berth = berth_factory(extra_args=["--thin-pool-size", "1G"])
    plugins = os.path.join(berth.dir, "plugins")
    os.makedirs(plugins)
    # Its own plugin folder too: it must not take its own socket for a plugin.
    berth.extra_args += ["--serve-volume-plugin", os.path.join(plugins, "berth.sock"),
                         "--plugin-socket-dir", plugins]
    sh("mount", "--bind", berth.dir, berth.dir)
    made_run = not os.path.isdir("/run/docker/plugins")
    os.makedirs("/run/docker/plugins", exist_ok=True)
    dockerd = None
    try:
        sh("mount", "--make-shared", berth.dir)
        berth.start()
        berth.image = import_busybox(berth, "plugin-provider-berth:v1")
        wrapper = os.path.join(berth.dir, "dockerd-ns")
        with open(wrapper, "w") as f:
            f.write(DOCKERD_IN_NAMESPACE)
        os.chmod(wrapper, 0o755)
        os.environ["KEEP"], os.environ["PLUGINS"] = berth.dir, plugins
        dockerd = DockerDaemon(wrapper)
        dockerd.start()
        dockerd.image = import_busybox(dockerd, "plugin-provider:v1")
        yield berth, dockerd
    finally:
        os.environ.pop("KEEP", None)
        os.environ.pop("PLUGINS", None)
        if dockerd is not None:
            dockerd.docker("rm", "-f", *dockerd.docker("ps", "-aq").stdout.split(), check=False)
            dockerd.stop()
        berth.stop()
        subprocess.run(["umount", "-l", berth.dir], capture_output=True)
        if made_run:
            shutil.rmtree("/run/docker", ignore_errors=True)


def mount_ids(berth, name: str) -> list[str]:
    """The volume's mount ids, as berth's database holds them."""
    db = sqlite3.connect(f"file:{os.path.join(berth.root, 'berth.db')}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT mount_id FROM volume_mounts WHERE volume = ?", (name,)).fetchall()
    finally:
        db.close()
    return sorted(r[0] for r in rows)


def berth_volume(berth, name: str) -> dict:
    code, body = berth.api("GET", f"/volumes/{name}")
    assert code == 200, body
    return body


def seq_prefix_ok(lines: list[str]) -> bool:
    complete = lines[:-1]  # the last may be cut where the freeze fell
    return complete == [str(i) for i in range(len(complete))]


def test_dockerd_uses_a_berth_thin_volume_through_the_plugin(engines):
    berth, docker = engines
    docker.docker("volume", "create", "-d", "berth", "-o", "size=64M", "db")
    seen = json.loads(docker.docker("volume", "inspect", "db").stdout)[0]
    assert seen["Driver"] == "berth" and seen["Scope"] == "local", seen
    mine = berth_volume(berth, "db")
    assert mine["Driver"] == "thin" and mine["Options"] == {"size": "64M"}, mine
    mnt = mine["Mountpoint"]
    assert not is_mounted(mnt), "mounted only when a container uses it"

    writer = docker.docker("run", "-d", "--network", "none", "-v", "db:/data", docker.image, "sh", "-c",
                           "i=0; while :; do echo $i >> /data/seq; i=$((i+1)); done").stdout.strip()
    sleeper = docker.docker("run", "-d", "--network", "none", "-v", "db:/data", docker.image,
                            "sleep", "600").stdout.strip()
    assert is_mounted(mnt)
    # One mount id per Docker mount (Docker makes a random ID for each).
    ids = mount_ids(berth, "db")
    assert len(ids) == 2 and all(i.startswith("plugin-client-") for i in ids), ids

    # A snapshot while a Docker container writes is consistent.
    time.sleep(1.0)
    berth.berth_cli("volume", "snapshot", "create", "db", "mid")
    image = os.path.join(berth.root, "thin", "pool", "snapshots", "db", "mid.img")
    fsck = sh("e2fsck", "-fn", image, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    seq = sh("debugfs", "-R", "cat /seq", image).stdout.splitlines()
    assert len(seq) > 10 and seq_prefix_ok(seq), seq[:5] + seq[-5:]
    # A clone and a backup work on it as on any thin volume, writer running.
    berth.berth_cli("volume", "clone", "db", "dbcopy")
    env = {"BERTH_REPO_PASSWORD": "provider side 42"}
    berth.berth_cli("backup", "repo", "init", "rp", "--url", os.path.join(berth.dir, "repo"), env=env)
    berth.berth_cli("volume", "backup", "db", "--repo", "rp", env=env)
    docker.docker("rm", "-f", writer)
    copied = berth.docker("run", "--rm", "-v", "dbcopy:/c", "--network", "none", berth.image,
                          "cat", "/c/seq").stdout.splitlines()
    assert len(copied) > 10 and seq_prefix_ok(copied), copied[-3:]
    berth.docker("volume", "rm", "dbcopy")
    berth.berth_cli("backup", "repo", "rm", "rp")
    sleeper_id = mount_ids(berth, "db")
    assert len(sleeper_id) == 1 and sleeper_id[0] in ids, (sleeper_id, ids)

    # The size cap holds inside the Docker container.
    full = docker.docker("exec", sleeper, "sh", "-c",
                         "dd if=/dev/zero of=/data/big bs=1M count=100 2>&1; echo rc=$?", check=False)
    assert "No space left on device" in full.stdout and "rc=1" in full.stdout, full.stdout
    docker.docker("exec", sleeper, "rm", "/data/big")

    # In use: neither engine removes it.
    p = docker.docker("volume", "rm", "db", check=False)
    assert p.returncode != 0 and "in use" in p.stderr, p.stderr
    p = berth.docker("volume", "rm", "db", check=False)
    assert p.returncode != 0 and "in use" in p.stderr, p.stderr

    # berth restarts under the running container: its mount id stays, the
    # container keeps writing, and the volume is unmounted at its Unmount.
    berth.restart()
    assert mount_ids(berth, "db") == sleeper_id
    docker.docker("exec", sleeper, "sh", "-c", "echo after > /data/after && sync")
    assert is_mounted(mnt)
    docker.docker("stop", "-t", "1", sleeper)
    wait_for("unmounted after the last Docker container's Unmount", lambda: not is_mounted(mnt))
    assert mount_ids(berth, "db") == []
    docker.docker("rm", sleeper)

    # Removing it through dockerd gives the pool its space back.
    filler = docker.docker("run", "--rm", "--network", "none", "-v", "db:/data", docker.image, "sh", "-c",
                           "dd if=/dev/urandom of=/data/f bs=1M count=40 && sync && cat /data/after")
    assert filler.stdout.strip().endswith("after"), filler.stdout
    pool_img = os.path.join(berth.root, "thin", "pool.img")
    grown = os.stat(pool_img).st_blocks * 512
    berth.berth_cli("volume", "snapshot", "rm", "db", "mid")
    docker.docker("volume", "rm", "db")
    assert "db" not in berth.list_volumes()
    wait_for("the pool's space given back",
             lambda: grown - os.stat(pool_img).st_blocks * 512 > 32 * MIB, timeout=60)


def test_the_plugin_protocol_is_answered_as_docker_expects(engines):
    """The protocol by hand: errors are 500 with {"Err"}, bad bodies and
    bad IDs are refused, and berth never uses its own socket as a plugin."""
    berth, _ = engines
    from conftest import unix_http
    sock = os.path.join(berth.dir, "plugins", "berth.sock")

    def call(method: str, body) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, _, raw = unix_http(sock, "POST", f"/{method}", data,
                                   {"Content-Type": "application/json"})
        return status, json.loads(raw) if raw.strip() else {}

    assert call("Plugin.Activate", {}) == (200, {"Implements": ["VolumeDriver"]})
    assert call("VolumeDriver.Capabilities", {}) == (200, {"Capabilities": {"Scope": "local"}})
    status, body = call("VolumeDriver.Create", {"Name": "lv", "Opts": {"driver": "local"}})
    assert status == 200 and "Err" not in body, body
    assert berth_volume(berth, "lv")["Driver"] == "local"
    status, body = call("VolumeDriver.Get", {"Name": "lv"})
    assert status == 200 and body["Volume"]["Name"] == "lv", body
    names = [v["Name"] for v in call("VolumeDriver.List", {})[1]["Volumes"]]
    assert "lv" in names
    for method, req, words in (
            ("VolumeDriver.Create", b"{not json", "bad request body"),
            ("VolumeDriver.Create", {"Name": "x1", "Opts": {"driver": "nfs-plugin"}}, "not one of berth's"),
            ("VolumeDriver.Create", {"Name": "../up", "Opts": {"driver": "local"}}, "invalid characters"),
            ("VolumeDriver.Create", {"Name": "t1", "Opts": {"size": "1X"}}, "invalid size"),
            ("VolumeDriver.Create", {"Name": "", "Opts": {"driver": "local"}}, "invalid characters"),
            ("VolumeDriver.Mount", {"Name": "lv", "ID": "../../etc"}, "invalid mount ID"),
            ("VolumeDriver.Unmount", {"Name": "nope", "ID": "abc"}, "no such volume"),
            ("VolumeDriver.Mount", {"Name": "nope", "ID": "abc"}, "no such volume"),
            ("VolumeDriver.Get", {"Name": "nope"}, "no such volume")):
        status, body = call(method, req)
        assert status == 500 and words in body.get("Err", ""), (method, req, status, body)
    assert sorted(berth.list_volumes()) == ["lv"], "refused calls made nothing"
    # berth's own API does not take its plugin socket for a plugin.
    p = berth.docker("volume", "create", "-d", "berth", "loop", check=False)
    assert p.returncode != 0 and "berth's own volume plugin" in p.stderr, p.stderr
    # Nor through a relay to it: the create that comes back fails at once
    # (the name is held by the create under way), and nothing is made.
    relay = start_relay(os.path.join(berth.dir, "plugins", "relay.sock"), sock)
    try:
        begun = time.monotonic()
        p = berth.docker("volume", "create", "-d", "relay", "-o", "driver=local", "rx", check=False)
        assert p.returncode != 0 and "leads back to berth" in p.stderr, p.stderr
        took = time.monotonic() - begun
        print(f"create through a relay back to berth failed after {took:.2f} s")
        assert took < 30, "waited out the plugin timeout"
        assert "rx" not in berth.list_volumes()
    finally:
        relay.shutdown()
        relay.server_close()
    status, body = call("VolumeDriver.Remove", {"Name": "lv"})
    assert status == 200, body
    assert not berth.list_volumes()


def start_relay(path: str, target: str):
    """A unix socket at `path` that passes every connection on to `target`."""
    import socket
    import socketserver
    import threading

    class Relay(socketserver.BaseRequestHandler):
        def handle(self):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(target)

            def pump(src, dst):
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
            back.start()
            pump(self.request, upstream)
            back.join(timeout=130)
            upstream.close()

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    server = Server(path, Relay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
