"""Where the thin pool lives (issue 5): a pool file at a path of the
administrator's choosing (`--thin-pool-file`), or a block device that is
already XFS with reflink (`--thin-pool-device`). berth never formats a
device: one holding another filesystem, or none, or XFS without reflink, is
refused with what to run, and is left exactly as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import loop_devices_backed_by

pytestmark = pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs (mkfs.xfs) missing")

GIB = 1 << 30


def blkid_type(dev: str) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", dev],
                          capture_output=True, text=True).stdout.strip()


def mounts_of(dev: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[1:2] == [dev]:
                out.append(left.split()[4])
    return out


@pytest.fixture
def block_device():
    """A loop device over a sparse 1 GiB file, detached afterwards (after
    lazily unmounting whatever still has it mounted)."""
    folder = tempfile.mkdtemp(prefix="berth-dev-", dir="/tmp")
    backing = os.path.join(folder, "disk.img")
    with open(backing, "wb") as f:
        f.truncate(GIB)
    dev = subprocess.run(["losetup", "--find", "--show", backing], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        for mp in mounts_of(dev):
            subprocess.run(["umount", "-l", mp], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
        deadline = time.monotonic() + 10
        while loop_devices_backed_by(backing) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)


def test_pool_file_at_a_chosen_path(berth_factory):
    elsewhere = tempfile.mkdtemp(prefix="berth-poolfile-", dir="/tmp")
    pool_file = os.path.join(elsewhere, "sub", "my.pool")
    try:
        d = berth_factory(extra_args=["--thin-pool-size", "1G", "--thin-pool-file", pool_file]).start()
        d.docker("volume", "create", "-d", "thin", "-o", "size=100M", "vol")
        assert os.path.isfile(pool_file) and not os.path.exists(pool_file + ".tmp")
        assert not os.path.exists(os.path.join(d.root, "thin", "pool.img"))
        assert loop_devices_backed_by(pool_file), "the pool file is on a loop device"
        d.stop()
        d.cleanup()  # unmounts the pool: the loop device lets go
    finally:
        deadline = time.monotonic() + 10
        while loop_devices_backed_by(pool_file) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_pool_on_an_xfs_device_keeps_data_across_restarts(block_device, berth_factory):
    subprocess.run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", block_device], check=True)
    d = berth_factory(extra_args=["--thin-pool-device", block_device]).start()
    d.docker("volume", "create", "-d", "thin", "-o", "size=200M", "db")
    pool = os.path.join(d.root, "thin", "pool")
    assert pool in mounts_of(block_device)
    assert os.path.isfile(os.path.join(pool, "volumes", "db.img"))
    from busybox_image import import_busybox, remove_all_containers
    image = import_busybox(d, "pooldev:v1")
    try:
        d.docker("run", "--rm", "-v", "db:/d", image, "sh", "-c", "echo kept > /d/f")
        d.berth_cli("volume", "snapshot", "create", "db", "s1")
        d.restart()
        out = d.docker("run", "--rm", "-v", "db:/d", image, "cat", "/d/f").stdout
        assert out == "kept\n"
        assert "s1" in d.berth_cli("volume", "snapshot", "ls", "db").stdout
    finally:
        remove_all_containers(d)
    assert blkid_type(block_device) == "xfs"


@pytest.mark.parametrize("prepare,found", [
    (["mkfs.ext4", "-q", "-F"], "holds ext4, not XFS"),
    (None, "holds no filesystem, not XFS"),
    (["mkfs.xfs", "-q", "-f", "-m", "reflink=0"], "cannot share blocks (reflink)"),
])
def test_a_device_berth_cannot_use_is_refused_and_left_alone(block_device, berth_factory,
                                                            prepare, found):
    if prepare:
        subprocess.run(prepare + [block_device], check=True)
    before = blkid_type(block_device)
    with open(block_device, "rb") as f:
        head = f.read(1 << 20)
    d = berth_factory(extra_args=["--thin-pool-device", block_device]).start()
    p = d.docker("volume", "create", "-d", "thin", "-o", "size=100M", "vol", check=False)
    assert p.returncode != 0 and found in p.stderr, p.stderr
    assert d.docker("volume", "ls", "-q").stdout == ""
    assert d.docker("volume", "create", "plain").stdout.strip() == "plain", \
        "local volumes still work"
    d.stop()
    assert mounts_of(block_device) == [], "a refused pool is not left mounted"
    assert blkid_type(block_device) == before
    if "reflink" not in found:  # (XFS without reflink was mounted to find out)
        with open(block_device, "rb") as f:
            assert f.read(1 << 20) == head, "berth wrote nothing to the device"


def test_two_pool_sources_are_refused_at_start(berth_factory, tmp_path):
    d = berth_factory(extra_args=["--thin-pool-dir", str(tmp_path),
                                  "--thin-pool-device", "/dev/null"])
    proc = d.spawn()
    assert proc.wait(timeout=30) == 2
    assert "cannot be used with" in open(d.log).read()
