"""Nothing is deleted through a mount when images and containers go: an
image's layer folder (`rmi`), its scratch folder at start, and a
container's runtime state (`rm`). Each deleted the mounted folder's files
before (found by an outside tester, 2026-12-05); the volume side is in
test_mounts_in_volumes.py."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest


@pytest.fixture
def bind():
    """Bind mounts made by the test, undone (newest first) at the end."""
    made: list[str] = []

    def mount(source: str, target: str) -> None:
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", "--bind", source, target], check=True)
        made.append(target)

    yield mount
    for point in reversed(made):
        subprocess.run(["umount", point], check=False)


def kept_folder(daemon, content: bytes) -> str:
    path = os.path.join(daemon.dir, f"kept-{uuid.uuid4().hex[:8]}")
    os.makedirs(os.path.join(path, "deep"))
    with open(os.path.join(path, "deep", "precious"), "wb") as f:
        f.write(content)
    return path


def intact(path: str, content: bytes) -> bool:
    with open(os.path.join(path, "deep", "precious"), "rb") as f:
        return f.read() == content


def test_rmi_never_deletes_through_a_mount_in_a_layer(daemon, image, bind):
    # A layer of its own: a container's change, committed.
    name = f"mi-{uuid.uuid4().hex[:8]}"
    daemon.docker("run", "--name", name, image, "sh", "-c", f"echo {name} > /mine")
    tag = f"{name}:committed"
    daemon.docker("commit", name, tag)
    daemon.docker("rm", name)
    _, info = daemon.api("GET", f"/images/{tag}/json")
    top = info["RootFS"]["Layers"][-1].split(":", 1)[1]
    layer = os.path.join(daemon.root, "images", "layers", top)
    assert os.path.isdir(layer), layer
    kept = kept_folder(daemon, b"layer")
    bind(kept, os.path.join(layer, "mnt-by-hand"))
    refused = daemon.docker("rmi", tag, check=False)
    assert refused.returncode != 0
    assert "mounted" in refused.stderr, refused.stderr
    assert intact(kept, b"layer")
    # Refused before anything went: the image is whole.
    status, after = daemon.api("GET", f"/images/{tag}/json")
    assert status == 200 and after["RootFS"] == info["RootFS"], after
    subprocess.run(["umount", os.path.join(layer, "mnt-by-hand")], check=True)
    daemon.docker("rmi", tag)
    assert not os.path.exists(layer)


def test_rm_never_deletes_through_a_mount_in_the_runtime_state(daemon, image, bind):
    cid = daemon.docker("run", "-d", image, "sleep", "300").stdout.strip()
    state = os.path.join(daemon.root, "runtime", cid)
    assert os.path.isdir(state), os.listdir(os.path.join(daemon.root, "runtime"))
    kept = kept_folder(daemon, b"state")
    bind(kept, os.path.join(state, "mnt-by-hand"))
    daemon.docker("rm", "-f", cid)
    assert intact(kept, b"state")


@pytest.mark.parametrize("where", [("tmp", "left", "over"), ("layers", "ab" * 32, "mnt")])
def test_a_mount_in_image_leftovers_neither_goes_nor_stops_the_start(berth_factory, bind, where):
    """A scratch folder, or a layer folder no image records, with a mount
    inside: start-up leaves it (with a warning) and starts."""
    berth = berth_factory().start()
    berth.stop()
    kept = kept_folder(berth, b"leftover")
    bind(kept, os.path.join(berth.root, "images", *where))
    berth.start()
    assert berth.http("GET", "/_ping")[0] == 200
    berth.stop()
    assert intact(kept, b"leftover")
