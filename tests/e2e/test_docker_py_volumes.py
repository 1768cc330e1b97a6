"""docker-py's container volume behaviours, written as our own tests
(issue 4): binds rw/ro, Mount objects, named volumes, a sub-path mount, and
volumes_from.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid

import docker
import pytest
from docker.types import Mount


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="dpv-host.", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run(client, image, cmd, **kw):
    c = client.containers.run(image, ["sh", "-c", cmd], detach=True, **kw)
    try:
        code = c.wait()["StatusCode"]
        return code, c.logs(stdout=True, stderr=True).decode()
    finally:
        c.remove(v=True, force=True)


def test_binds_rw_and_ro(client, image, host_dir):
    code, _ = run(client, image, "echo rw > /h/out", volumes={host_dir: {"bind": "/h", "mode": "rw"}})
    assert code == 0
    assert open(f"{host_dir}/out").read() == "rw\n"
    code, logs = run(client, image, "echo no > /h/out2", volumes=[f"{host_dir}:/h:ro"])
    assert code != 0 and "Read-only file system" in logs


def test_mount_objects_and_named_volume(client, image, uniq, host_dir):
    vol = f"{uniq}-named"
    code, _ = run(client, image, "echo named > /v/f", mounts=[Mount("/v", vol, type="volume")])
    assert code == 0
    assert client.volumes.get(vol).name == vol
    code, logs = run(client, image, "cat /v/f; cat /b/x",
                     mounts=[Mount("/v", vol, read_only=True), Mount("/b", host_dir, type="bind")],
                     volumes={})
    assert (code, logs) == (1, "named\ncat: can't open '/b/x': No such file or directory\n")
    code, logs = run(client, image, "grep ' /t ' /proc/mounts", mounts=[Mount("/t", None, type="tmpfs", tmpfs_size=1 << 20)])
    assert code == 0 and "tmpfs" in logs


def test_subpath_mount(client, image, uniq):
    vol = f"{uniq}-sub"
    run(client, image, "mkdir -p /v/inner && echo deep > /v/inner/f", mounts=[Mount("/v", vol)])
    code, logs = run(client, image, "cat /s/f", mounts=[Mount("/s", vol, subpath="inner")])
    assert (code, logs) == (0, "deep\n")


def test_volumes_from(client, image, uniq):
    store = client.containers.create(image, "true", name=f"{uniq}-store", volumes=["/data"])
    try:
        code, _ = run(client, image, "echo shared > /data/f", volumes_from=[store.id])
        assert code == 0
        code, logs = run(client, image, "cat /data/f; echo x > /data/g", volumes_from=[f"{store.name}:ro"])
        assert code != 0 and logs.startswith("shared\n") and "Read-only file system" in logs
        info = client.api.inspect_container(store.id)
        assert info["Mounts"][0]["Type"] == "volume" and info["Mounts"][0]["Destination"] == "/data"
    finally:
        store.remove(v=True, force=True)
