"""Nothing is ever deleted through a mount point: a volume's remove, the
trash and the spare folders stop at any filesystem mounted inside what
they delete, a bind mount of the same filesystem included (same device
number), and whatever else is mounted on the host (a mount point that is
not UTF-8) does not blind the check. Found by an outside tester
(2026-12-05): each of these deleted the mounted folder's files before."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture
def daemon(berth_factory):
    return berth_factory().start()


@pytest.fixture
def mounts():
    """Mount points made by the test, unmounted (newest first) at the end."""
    made: list[bytes] = []

    def mount(*args: str | bytes) -> None:
        subprocess.run(["mount", *args], check=True)
        made.append(os.fsencode(args[-1]))

    yield mount
    for point in reversed(made):
        subprocess.run(["umount", point], check=False)


def folder_with(path: str, content: bytes) -> str:
    os.makedirs(path)
    with open(os.path.join(path, "precious"), "wb") as f:
        f.write(content)
    return path


def create(daemon, name: str) -> str:
    status, data = daemon.api("POST", "/volumes/create", body={"Name": name})
    assert status == 201, data
    return daemon.mountpoint(name)


def refused_remove(daemon, name: str) -> str:
    status, data = daemon.api("DELETE", f"/volumes/{name}")
    assert status >= 400, data
    assert name in daemon.list_volumes()
    assert not daemon.trash_entries()
    return str(data)


def test_two_filesystems_stacked_on_data_refuse_the_remove(daemon, mounts):
    data = create(daemon, "mv-stacked")
    lower = folder_with(os.path.join(daemon.dir, "lower"), b"one")
    upper = folder_with(os.path.join(daemon.dir, "upper"), b"two")
    mounts("--bind", lower, data)
    mounts("--bind", upper, data)
    assert "mounted" in refused_remove(daemon, "mv-stacked")
    assert os.listdir(lower) == os.listdir(upper) == ["precious"]


def test_a_mount_point_that_is_not_utf8_does_not_hide_a_mount_inside(berth_factory):
    """The daemon runs in a mount namespace of its own (private
    propagation), where the odd mount is made: on the host's table it would
    break every other test's container starts (libcontainer reads the table
    as UTF-8) while it exists."""
    daemon = berth_factory()
    wrapper = os.path.join(daemon.dir, "berth-in-own-mount-ns")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec unshare -m --propagation private -- {daemon.bin} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    daemon.bin = wrapper
    daemon.start()

    def inside(*args: str | bytes) -> None:
        subprocess.run(["nsenter", "-t", str(daemon.proc.pid), "-m", "--", *args], check=True)

    odd = os.fsencode(daemon.dir) + b"/odd-\xff\xfe"
    os.makedirs(odd)
    inside("mount", "-t", "tmpfs", "tmpfs", odd)
    data = create(daemon, "mv-inside")
    sub = os.path.join(data, "sub")
    os.makedirs(sub)
    kept = folder_with(os.path.join(daemon.dir, "kept"), b"six")
    inside("mount", "--bind", kept, sub)
    assert "mounted inside" in refused_remove(daemon, "mv-inside")
    assert os.listdir(kept) == ["precious"]
    inside("umount", sub)
    daemon.stop()  # the namespace and the odd mount go with the daemon


def test_a_bind_mount_in_the_trash_is_never_deleted_through(daemon, mounts):
    """Storage in the trash with a bind mount of the same filesystem in
    it: start-up's emptying of the trash stops at the mount."""
    daemon.stop()
    stuck = os.path.join(daemon.volumes_dir, ".trash", "0" * 32, "_data")
    os.makedirs(stuck)
    kept = folder_with(os.path.join(daemon.dir, "kept"), b"five")
    mounts("--bind", kept, stuck)
    daemon.start()
    create(daemon, "mv-after")
    daemon.stop()
    assert os.listdir(kept) == ["precious"]


def test_a_bind_mount_in_the_spare_folders_is_never_deleted_through(daemon, mounts):
    daemon.stop()
    spare = os.path.join(daemon.volumes_dir, ".spare", "1", "_data")
    os.makedirs(spare, exist_ok=True)
    kept = folder_with(os.path.join(daemon.dir, "kept"), b"four")
    mounts("--bind", kept, spare)
    daemon.start()
    assert os.listdir(create(daemon, "mv-nospare")) == []
    daemon.stop()
    assert os.listdir(kept) == ["precious"]
