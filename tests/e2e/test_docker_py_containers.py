"""Must-show 4: docker-py runs containers on berth unchanged.

One berth daemon and one busybox image (made with `docker import`) are shared
by the module; each test uses unique names and removes its containers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid

import docker
import docker.errors
import pytest

from busybox_image import berth_with_cleanup, import_busybox
from conftest import HEX64


@pytest.fixture
def cname(client):
    made: list[str] = []

    def make():
        n = "dpy-" + uuid.uuid4().hex[:10]
        made.append(n)
        return n

    yield make
    for n in made:
        try:
            client.containers.get(n).remove(v=True, force=True)
        except docker.errors.NotFound:
            pass


def test_run_remove_returns_output(client, image, cname):
    name = cname()
    out = client.containers.run(image, "echo hi", remove=True, name=name)
    assert out == b"hi\n"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)
    assert name not in [c.name for c in client.containers.list(all=True)]


def test_run_nonzero_raises_container_error(client, image, cname):
    with pytest.raises(docker.errors.ContainerError) as exc:
        client.containers.run(image, ["sh", "-c", "echo oops >&2; exit 3"], name=cname(),
                              remove=True)
    assert exc.value.exit_status == 3
    assert b"oops" in exc.value.stderr


def test_run_detached_logs_wait_remove(client, image, cname):
    name = cname()
    c = client.containers.run(image, ["sh", "-c", "echo out1; echo err1 >&2; sleep 0.5; exit 4"],
                              detach=True, name=name)
    assert HEX64.match(c.id)
    assert c.name == name
    result = c.wait(timeout=30)
    assert result["StatusCode"] == 4
    assert not result.get("Error")
    assert c.logs() == b"out1\nerr1\n"
    assert c.logs(stdout=True, stderr=False) == b"out1\n"
    assert c.logs(stdout=False, stderr=True) == b"err1\n"
    c.reload()
    assert c.status == "exited"
    assert c.attrs["State"]["ExitCode"] == 4
    c.remove(v=True, force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


def test_remove_force_running(client, image, cname):
    c = client.containers.run(image, "sleep 300", detach=True, name=cname())
    c.reload()
    assert c.status == "running"
    with pytest.raises(docker.errors.APIError) as exc:
        c.remove()
    assert exc.value.status_code == 409
    c.remove(v=True, force=True)
    with pytest.raises(docker.errors.NotFound):
        c.reload()


def test_logs_stream(client, image, cname):
    c = client.containers.run(image, ["sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.2; done"],
                              detach=True, name=cname())
    lines = list(c.logs(stream=True, follow=True))
    assert b"".join(lines) == b"l1\nl2\nl3\n"
    assert c.wait()["StatusCode"] == 0


def test_list_all_and_running(client, image, cname):
    running, exited = cname(), cname()
    r = client.containers.run(image, "sleep 300", detach=True, name=running)
    e = client.containers.run(image, "true", detach=True, name=exited)
    e.wait()
    all_names = {c.name for c in client.containers.list(all=True)}
    assert {running, exited} <= all_names
    live = {c.name for c in client.containers.list()}
    assert running in live
    assert exited not in live
    [found] = client.containers.list(all=True, filters={"name": exited})
    assert found.id == e.id
    assert found.status == "exited"
    r.stop(timeout=1)
    r.reload()
    assert r.status == "exited"
    assert r.attrs["State"]["ExitCode"] == 137


def test_stop_and_kill(client, image, cname):
    c = client.containers.run(
        image, ["sh", "-c", 'trap "exit 8" TERM; echo ready; while true; do sleep 0.1; done'],
        detach=True, name=cname())
    deadline = time.monotonic() + 15  # let the trap be installed
    while b"ready" not in c.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    c.stop(timeout=10)
    assert c.wait()["StatusCode"] == 8

    k = client.containers.run(image, "sleep 300", detach=True, name=cname())
    k.kill(signal="SIGKILL")
    assert k.wait()["StatusCode"] == 137


def test_environment_workdir_user_volumes(client, image, cname):
    host = tempfile.mkdtemp(prefix="berth-dpy-", dir="/tmp")
    try:
        with open(os.path.join(host, "in"), "w") as f:
            f.write("from host\n")
        os.chmod(host, 0o777)
        c = client.containers.run(
            image, ["sh", "-c", 'echo "$FOO"; pwd; id -u; cat /ro/in; echo w > /rw/out; '
                    'echo x > /ro/nope'],
            environment={"FOO": "bar"}, working_dir="/tmp", user="1000:1000",
            volumes={host: {"bind": "/ro", "mode": "ro"}, host + "/": {"bind": "/rw", "mode": "rw"}},
            detach=True, name=cname())
        assert c.wait()["StatusCode"] != 0  # the write to /ro fails
        assert c.logs(stderr=False) == b"bar\n/tmp\n1000\nfrom host\n"
        assert b"Read-only file system" in c.logs(stdout=False)
        with open(os.path.join(host, "out")) as f:
            assert f.read() == "w\n"
        assert not os.path.exists(os.path.join(host, "nope"))
        c.reload()
        assert {(m["Destination"], m["RW"]) for m in c.attrs["Mounts"]} == {("/ro", False), ("/rw", True)}
    finally:
        shutil.rmtree(host, ignore_errors=True)


def test_create_then_start_low_level(client, image, cname):
    api = client.api
    name = cname()
    c = api.create_container(image, ["sh", "-c", "exit 2"], name=name,
                             host_config=api.create_host_config(auto_remove=False))
    assert HEX64.match(c["Id"])
    assert isinstance(c["Warnings"], list)
    assert api.inspect_container(name)["State"]["Status"] == "created"
    api.start(c["Id"])
    assert api.wait(c["Id"])["StatusCode"] == 2
    info = api.inspect_container(c["Id"])
    assert info["State"]["Status"] == "exited"
    assert info["Name"] == "/" + name
    api.remove_container(c["Id"])


def test_tty_output_is_raw(client, image, cname):
    """With a TTY, logs and attach carry the terminal's bytes unframed
    (CRLF line ends: the terminal's ONLCR), as dockerd sends them."""
    c = client.containers.run(image, ["sh", "-c", "echo one; echo two >&2"], tty=True,
                              detach=True, name=cname())
    assert c.wait()["StatusCode"] == 0
    assert c.logs() == b"one\r\ntwo\r\n"
    assert client.api.inspect_container(c.id)["Config"]["Tty"] is True
    c.remove()


def test_images_list(client, image):
    imgs = client.images.list()
    tagged = [i for i in imgs if image in i.tags]
    assert len(tagged) == 1
    assert tagged[0].id.startswith("sha256:")
    got = client.images.get(image)
    assert got.id == tagged[0].id
    assert got.attrs["RootFS"]["Type"] == "layers"


def test_unknown_image_not_found(client, cname):
    with pytest.raises(docker.errors.ImageNotFound):
        client.api.create_container("nosuch-img-xyz:latest", "true", name=cname())


def test_inspect_hostconfig_has_logconfig(client, image, cname):
    c = client.containers.create(image, "true", name=cname())
    assert c.attrs["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}


def test_run_remove_returns_output_via_low_level_api(client, image, cname):
    """What containers.run(remove=True) does, without reading
    HostConfig.LogConfig: create, start, wait, logs, remove."""
    api = client.api
    name = cname()
    c = api.create_container(image, "echo hi", name=name)
    api.start(c["Id"])
    assert api.wait(c["Id"])["StatusCode"] == 0
    assert api.logs(c["Id"], stdout=True, stderr=True, stream=False) == b"hi\n"
    api.remove_container(c["Id"], v=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)
