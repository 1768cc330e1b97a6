"""Copy-up (issue 4): image content at a volume's mount point is copied into
an empty volume when the container is created, with owners, modes,
symlinks and hard links; `volume-nocopy` skips it; a non-empty volume is
never overwritten; and it happens once per volume (berth's documented
choice: a volume emptied on purpose is not refilled).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from busybox_image import make_rootfs


@pytest.fixture(scope="module")
def seeded(daemon):
    """An image with /seed holding files of several owners and modes, a
    symlink, a hard link, and a VOLUME at /seed."""
    work = tempfile.mkdtemp(prefix="seed-", dir="/tmp")
    try:
        root = make_rootfs(os.path.join(work, "root"))
        seed = os.path.join(root, "seed")
        os.makedirs(os.path.join(seed, "sub"))
        with open(os.path.join(seed, "sub", "owned"), "w") as f:
            f.write("owned by 1234\n")
        os.chown(os.path.join(seed, "sub", "owned"), 1234, 4321)
        os.chmod(os.path.join(seed, "sub", "owned"), 0o640)
        os.chmod(os.path.join(seed, "sub"), 0o750)
        os.symlink("sub/owned", os.path.join(seed, "link"))
        os.link(os.path.join(seed, "sub", "owned"), os.path.join(seed, "hard"))
        # The folder itself: its owner and mode go to the volume's root
        # (a database image's data folder belongs to the database's user).
        os.chown(seed, 70, 71)
        os.chmod(seed, 0o770)
        tar = os.path.join(work, "seed.tar")
        subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
        ref = f"seeded-{uuid.uuid4().hex[:8]}:v1"
        daemon.docker("import", "-c", "VOLUME /seed", tar, ref)
        return ref
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def vol(uniq):
    """The test's volume name; volumes named with it go with uniq."""
    return uniq


def sh(daemon, image, mount_args, script, check=True):
    return daemon.docker("run", "--rm", *mount_args, image, "sh", "-c", script, check=check)


LISTING = "stat -c '%n %u:%g %a' /seed/sub /seed/sub/owned; readlink /seed/link; stat -c %h /seed/hard; cat /seed/hard"


def test_copy_up_keeps_owners_modes_links(daemon, seeded, vol):
    out = sh(daemon, seeded, ["-v", f"{vol}:/seed"], "stat -c '%n %u:%g %a' /seed; " + LISTING)
    assert out.stdout.splitlines() == [
        "/seed 70:71 770", "/seed/sub 0:0 750", "/seed/sub/owned 1234:4321 640", "sub/owned", "2",
        "owned by 1234"]


def test_nocopy_leaves_the_volume_empty(daemon, seeded, vol):
    out = sh(daemon, seeded, ["--mount", f"type=volume,src={vol},dst=/seed,volume-nocopy"], "ls -A /seed").stdout
    assert out == ""
    # -v's nocopy flag too.
    other = vol + "b"
    try:
        assert sh(daemon, seeded, ["-v", f"{other}:/seed:nocopy"], "ls -A /seed").stdout == ""
    finally:
        daemon.api("DELETE", f"/volumes/{other}?force=1")


def test_non_empty_volume_is_never_overwritten(daemon, seeded, vol):
    sh(daemon, seeded, ["--mount", f"type=volume,src={vol},dst=/data"], "echo mine > /data/owned-by-me")
    out = sh(daemon, seeded, ["-v", f"{vol}:/seed"], "ls -A /seed; cat /seed/owned-by-me").stdout
    assert out == "owned-by-me\nmine\n"


def test_copy_up_is_one_shot(daemon, seeded, vol):
    sh(daemon, seeded, ["-v", f"{vol}:/seed"], "rm -rf /seed/* /seed/.[!.]*; true")
    assert sh(daemon, seeded, ["-v", f"{vol}:/seed"], "ls -A /seed").stdout == ""


def test_image_volume_gets_an_anonymous_copy_and_rm_removes_it(daemon, seeded):
    before = set(daemon.docker("volume", "ls", "-q").stdout.split())
    out = sh(daemon, seeded, [], "cat /seed/sub/owned").stdout
    assert out == "owned by 1234\n"
    assert set(daemon.docker("volume", "ls", "-q").stdout.split()) == before, "--rm removes the anonymous volume"
