"""`docker cp` (issue 11): both ways, running or stopped, into volumes
mounted in the container; and the attack table — symlinks in the
container pointing at host paths, `..` in the path, hostile archives, a
container swapping a folder for a symlink while copies run. Host-side
markers (unique files and folders under /tmp) prove nothing of the host
is read or written.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile

import pytest

from container_helpers import unique


@pytest.fixture
def running(daemon, image):
    name = unique("cp")
    vol = unique("cpvol")
    daemon.docker("run", "-d", "--net", "none", "--name", name, "-v", f"{vol}:/vol", image,
                  "sleep", "300")
    yield name
    daemon.docker("rm", "-f", "-v", name, check=False)
    daemon.docker("volume", "rm", "-f", vol, check=False)


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="berth-cp-host-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def sh(daemon, name, script):
    return daemon.docker("exec", name, "sh", "-c", script).stdout


def test_copy_both_ways_into_volumes_and_stopped_containers(daemon, image, running, host_dir):
    src = os.path.join(host_dir, "in")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "sub", "f.txt"), "w") as f:
        f.write("hello from the host\n")
    os.chmod(os.path.join(src, "sub", "f.txt"), 0o640)
    daemon.docker("cp", src, f"{running}:/tmp/")
    assert sh(daemon, running, "cat /tmp/in/sub/f.txt") == "hello from the host\n"
    assert sh(daemon, running, "stat -c %a /tmp/in/sub/f.txt").strip() == "640"
    daemon.docker("cp", os.path.join(src, "sub", "f.txt"), f"{running}:/vol/into-volume.txt")
    assert sh(daemon, running, "cat /vol/into-volume.txt") == "hello from the host\n"
    sh(daemon, running, "mkdir -p /tmp/out/d && echo out > /tmp/out/d/x && ln -s x /tmp/out/d/l")
    daemon.docker("cp", f"{running}:/tmp/out", os.path.join(host_dir, "back"))
    assert open(os.path.join(host_dir, "back", "d", "x")).read() == "out\n"
    assert os.readlink(os.path.join(host_dir, "back", "d", "l")) == "x"
    # Stopped: the root filesystem and the volume, read and written.
    daemon.docker("stop", "-t", "1", running)
    daemon.docker("cp", os.path.join(src, "sub", "f.txt"), f"{running}:/vol/while-stopped.txt")
    daemon.docker("cp", f"{running}:/tmp/in/sub/f.txt", os.path.join(host_dir, "stopped.txt"))
    assert open(os.path.join(host_dir, "stopped.txt")).read() == "hello from the host\n"
    daemon.docker("start", running)
    assert sh(daemon, running, "cat /vol/while-stopped.txt") == "hello from the host\n"
    # Created, never started.
    fresh = unique("fresh")
    daemon.docker("create", "--net", "none", "--name", fresh, image, "true")
    try:
        daemon.docker("cp", os.path.join(src, "sub", "f.txt"), f"{fresh}:/f.txt")
        daemon.docker("cp", f"{fresh}:/f.txt", os.path.join(host_dir, "fresh.txt"))
        assert open(os.path.join(host_dir, "fresh.txt")).read() == "hello from the host\n"
    finally:
        daemon.docker("rm", "-f", fresh)


def test_stat_header_and_errors(daemon, running):
    status, headers, _ = daemon.http("HEAD", f"/containers/{running}/archive?path=/etc/passwd")
    assert status == 200
    import base64
    stat = json.loads(base64.b64decode(headers["X-Docker-Container-Path-Stat"]))
    assert stat["name"] == "passwd" and stat["mode"] & 0o777 and stat["linkTarget"] == ""
    status, _, _ = daemon.http("HEAD", f"/containers/{running}/archive?path=/nope")
    assert status == 404
    status, body = daemon.api("GET", f"/containers/{running}/archive?path=/nope")
    assert status == 404 and body["message"] == f"Could not find the file /nope in container {running}"
    status, body = daemon.api("PUT", f"/containers/{running}/archive?path=/etc/passwd",
                              headers={"Content-Type": "application/x-tar"})
    assert status == 400, body
    status, body = daemon.api("GET", f"/containers/{running}/archive")
    assert status == 400


def put_tar(daemon, name, path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return daemon.http("PUT", f"/containers/{name}/archive?path={path}", body=buf.getvalue(),
                       headers={"Content-Type": "application/x-tar"})


def test_attack_table_nothing_of_the_host_is_read_or_written(daemon, running, host_dir):
    secret = os.path.join(host_dir, "host-secret")
    with open(secret, "w") as f:
        f.write("HOST SECRET\n")
    target = os.path.join(host_dir, "host-target")
    os.makedirs(target)
    # 1. Symlinks in the container pointing at host paths, read through.
    sh(daemon, running, f"ln -s {secret} /tmp/to-secret; ln -s {host_dir} /tmp/to-dir; "
                        f"ln -s {target} /tmp/to-target")
    for path in ("/tmp/to-secret/", "/tmp/to-dir/host-secret", "/tmp/to-dir/."):
        status, _, body = daemon.http("GET", f"/containers/{running}/archive?path={path}")
        assert b"HOST SECRET" not in body, path
        assert status == 404, (path, status)
    # A link copied as itself is fine: it is only text.
    status, _, body = daemon.http("GET", f"/containers/{running}/archive?path=/tmp/to-secret")
    assert status == 200 and b"HOST SECRET" not in body
    # 2. `..` in the path.
    for path in (f"/../../..{secret}", f"/tmp/../../../..{secret}"):
        status, _, body = daemon.http("GET", f"/containers/{running}/archive?path={path}")
        assert status == 404 and b"HOST SECRET" not in body, path
    # 3. Written through a container symlink to a host folder.
    f = os.path.join(host_dir, "payload")
    with open(f, "w") as out:
        out.write("payload\n")
    daemon.docker("cp", f, f"{running}:/tmp/to-target/", check=False)
    daemon.docker("cp", f, f"{running}:/tmp/to-dir/planted", check=False)
    assert os.listdir(target) == [], "nothing lands in the host folder"
    assert sorted(os.listdir(host_dir)) == ["host-secret", "host-target", "payload"]
    # 4. Hostile archives: `..` entries, a symlink then a file through it,
    #    an absolute link target followed by a write.
    dotdot = tarfile.TarInfo(f"../../../../..{target}/dotdot")
    dotdot.size = 3
    link = tarfile.TarInfo("evil")
    link.type, link.linkname = tarfile.SYMTYPE, target
    through = tarfile.TarInfo("evil/through")
    through.size = 3
    for members in ([(dotdot, b"bad")], [(link, None), (through, b"bad")]):
        status, _, body = put_tar(daemon, running, "/tmp", members)
        assert status >= 400, (status, body)
    assert os.listdir(target) == []
    # 5. The root filesystem of the host is never the container's.
    status, _, body = daemon.http("GET", f"/containers/{running}/archive?path=/etc/hostname")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        inside = tar.extractfile("hostname").read().decode()
    assert inside.strip() == json.loads(daemon.docker("inspect", running).stdout)[0]["Config"]["Hostname"]


def test_a_folder_swapped_for_a_symlink_during_copies(daemon, running, host_dir):
    target = os.path.join(host_dir, "swap-target")
    os.makedirs(target)
    # The container flips /tmp/swap between a folder and a link to the
    # host folder's path as fast as it can.
    daemon.docker("exec", "-d", running, "sh", "-c",
                  f"while true; do rm -rf /tmp/swap; mkdir /tmp/swap; rm -rf /tmp/swap; "
                  f"ln -s {target} /tmp/swap; done")
    payload = os.path.join(host_dir, "p.txt")
    with open(payload, "w") as f:
        f.write("x\n")
    secret = os.path.join(target, "inside-host-folder")
    with open(secret, "w") as f:
        f.write("HOST SECRET\n")
    import http.client
    for i in range(40):
        daemon.docker("cp", payload, f"{running}:/tmp/swap/p{i}.txt", check=False)
        try:
            status, _, body = daemon.http("GET", f"/containers/{running}/archive?path=/tmp/swap/.")
        except (http.client.IncompleteRead, http.client.RemoteDisconnected, ValueError) as cut:
            # The folder vanished mid-copy: the stream is cut (as dockerd's);
            # when it vanished before the body's first bytes, the headers
            # were never flushed and the cut shows as a closed connection.
            body = getattr(cut, "partial", b"")
        assert b"HOST SECRET" not in body
    assert os.listdir(target) == ["inside-host-folder"], "nothing written in the host folder"


def test_read_only_roots_and_volumes_refuse_writes_but_not_reads(daemon, image, host_dir):
    f = os.path.join(host_dir, "f")
    with open(f, "w") as out:
        out.write("x\n")
    ro, rovol = unique("cpro"), unique("cprovol")
    daemon.docker("create", "--net", "none", "--read-only", "--name", ro, image, "true")
    daemon.docker("create", "--net", "none", "--name", rovol, "-v", f"{rovol}:/data:ro",
                  "-v", f"{host_dir}:/b:ro", image, "true")
    try:
        r = daemon.docker("cp", f, f"{ro}:/", check=False)
        assert r.returncode != 0 and "container rootfs is marked read-only" in r.stderr, r.stderr
        r = daemon.docker("cp", f, f"{rovol}:/data/", check=False)
        assert r.returncode != 0 and "mounted volume is marked read-only" in r.stderr, r.stderr
        # Reads work, also through a read-only bind of a stopped container.
        daemon.docker("cp", f"{rovol}:/b/f", os.path.join(host_dir, "back"))
        assert open(os.path.join(host_dir, "back")).read() == "x\n"
        daemon.docker("cp", f"{rovol}:/etc/passwd", os.path.join(host_dir, "passwd"))
    finally:
        daemon.docker("rm", "-f", "-v", ro, rovol, check=False)


def test_padded_uploads_and_symlink_chains(daemon, running, host_dir):
    """A tar followed by padding (the docker CLI pads to 10 KiB records) is
    a success; a chain of links resolves to its end, as dockerd's stat."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("padded.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"pad"))
    body = buf.getvalue() + b"\0" * 4_000_000
    status, _, resp = daemon.http("PUT", f"/containers/{running}/archive?path=/tmp", body=body,
                                  headers={"Content-Type": "application/x-tar"})
    assert status == 200, resp
    assert sh(daemon, running, "cat /tmp/padded.txt") == "pad"
    sh(daemon, running, "echo real > /realfile; ln -s /realfile /abs; ln -s /abs /chain2; "
                        "ln -s /chain2 /chain3")
    import base64
    status, headers, _ = daemon.http("HEAD", f"/containers/{running}/archive?path=/chain3")
    stat = json.loads(base64.b64decode(headers["X-Docker-Container-Path-Stat"]))
    assert stat["linkTarget"] == "/realfile", stat


def test_hostile_size_fields_are_refused_not_a_crash(daemon, running):
    header = bytearray(512)
    header[:4] = b"evil"
    header[124:136] = b"\x80" + b"\xff" * 11  # base-256 size of 2^88 - 1
    header[156:157] = b"0"
    header[148:156] = b"        "
    header[148:155] = f"{sum(header):06o}\0".encode()
    status, _, body = daemon.http("PUT", f"/containers/{running}/archive?path=/tmp",
                                  body=bytes(header) + bytes(1024),
                                  headers={"Content-Type": "application/x-tar"})
    assert status >= 400 and b"panicked" not in body, body
    assert sh(daemon, running, "echo alive") == "alive\n"
