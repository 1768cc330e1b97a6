"""Local volumes with type/device/o inside containers (issue 4): mounted when
the first container using them starts, unmounted when the last stops; and
in-use protection that survives a daemon restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from conftest import loop_devices_backed_by, mount_points_under


def wait_until(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture
def vol(uniq):
    """The test's volume name; its containers and volume go with uniq."""
    return uniq


def mounted(path: str) -> bool:
    return path in mount_points_under(path)


def test_tmpfs_volume_is_empty_after_the_last_container_stops(daemon, image, vol):
    daemon.docker("volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=4m", vol)
    data = daemon.docker("volume", "inspect", "-f", "{{.Mountpoint}}", vol).stdout.strip()
    holder = f"{vol}-holder"
    daemon.docker("run", "-d", "--name", holder, "-v", f"{vol}:/t", image, "sh", "-c", "echo a > /t/a; sleep 60")
    assert wait_until(lambda: mounted(data))
    # A second container shares the same tmpfs while the first still runs.
    assert daemon.docker("run", "--rm", "-v", f"{vol}:/t", image, "cat", "/t/a").stdout == "a\n"
    assert mounted(data), "still mounted for the first container"
    daemon.docker("rm", "-f", holder)
    assert wait_until(lambda: not mounted(data)), "unmounted after the last container"
    assert daemon.docker("run", "--rm", "-v", f"{vol}:/t", image, "ls", "-A", "/t").stdout == ""


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 (e2fsprogs) missing")
def test_ext4_on_loop_volume_keeps_data_and_detaches(daemon, image, vol):
    work = tempfile.mkdtemp(prefix="lv-ext4.", dir="/tmp")
    img = os.path.join(work, "fs.img")
    try:
        with open(img, "wb") as f:
            f.truncate(32 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
        daemon.docker("volume", "create", "-o", "type=ext4", "-o", f"device={img}", "-o", "o=loop", vol)
        daemon.docker("run", "--rm", "-v", f"{vol}:/e", image, "sh", "-c", "echo persisted > /e/f; sync")
        assert wait_until(lambda: not loop_devices_backed_by(img)), "loop device detached after the last container"
        assert daemon.docker("run", "--rm", "-v", f"{vol}:/e", image, "cat", "/e/f").stdout == "persisted\n"
        assert wait_until(lambda: not loop_devices_backed_by(img))
        daemon.docker("volume", "rm", vol)
        assert os.path.getsize(img) == 32 * 1024 * 1024, "removing the volume never touches the device"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_stopped_container_still_holds_its_volume_after_restart(berth_factory, vol):
    from busybox_image import import_busybox, remove_all_containers
    d = berth_factory().start()
    try:
        img = import_busybox(d, "restart-hold:v1")
        d.docker("run", "--name", f"{vol}-c", "-v", f"{vol}:/d", img, "true")
        d.restart()
        p = d.docker("volume", "rm", vol, check=False)
        assert p.returncode != 0
        assert "volume is in use" in p.stderr
        d.docker("rm", f"{vol}-c")
        d.docker("volume", "rm", vol)
    finally:
        remove_all_containers(d)
