"""The thin driver (issue 5, first slice): hard size caps, allocation only
as data is written, overcommit, and space returned to the pool's backing
file when a volume is removed."""

from __future__ import annotations

import os
import shutil

import pytest

GIB = 1 << 30
MIB = 1 << 20

pytestmark = pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs (mkfs.xfs) missing")


@pytest.fixture
def thin_daemon(berth_factory):
    from busybox_image import import_busybox, remove_all_containers
    d = berth_factory(extra_args=["--thin-pool-size", "2G"]).start()
    d.image = import_busybox(d, "thin-test:v1")
    yield d
    remove_all_containers(d)


def status(d, vol):
    code, body = d.api("GET", f"/volumes/{vol}")
    assert code == 200, body
    return body["Status"]


def pool_file_allocated(d):
    return os.stat(os.path.join(d.root, "thin", "pool.img")).st_blocks * 512


def test_size_cap_is_hard_and_allocation_follows_writes(thin_daemon):
    d = thin_daemon
    d.docker("volume", "create", "-d", "thin", "-o", "size=1G", "capped")
    d.docker("volume", "create", "-d", "thin", "-o", "size=1G", "neighbour")
    d.docker("run", "--rm", "-v", "neighbour:/n", d.image, "sh", "-c", "echo safe > /n/f")
    before = status(d, "capped")
    assert before["SizeBytes"] == GIB and before["Allocated"] < 64 * MIB
    p = d.docker("run", "--rm", "-v", "capped:/d", d.image, "sh", "-c",
                 "dd if=/dev/zero of=/d/big bs=1M count=1126 2>&1; echo rc=$?", check=False)
    assert "No space left on device" in p.stdout, p.stdout
    written = int(d.docker("run", "--rm", "-v", "capped:/d", d.image, "stat", "-c", "%s", "/d/big").stdout)
    assert 900 * MIB < written < GIB
    after = status(d, "capped")
    assert abs(after["Allocated"] - written) < 96 * MIB, (after, written)
    # Nothing outside the volume was affected.
    assert d.docker("run", "--rm", "-v", "neighbour:/n", d.image, "cat", "/n/f").stdout == "safe\n"
    assert d.docker("run", "--rm", d.image, "sh", "-c", "echo ok > /tmp/x && cat /tmp/x").stdout == "ok\n"
    df = d.docker("system", "df", "-v").stdout
    assert "capped" in df


def test_overcommit_and_space_returned_on_remove(thin_daemon):
    d = thin_daemon
    for i in range(10):
        d.docker("volume", "create", "-d", "thin", "-o", "size=1G", f"over{i}")
    pool = status(d, "over0")["Pool"]
    assert pool["Size"] < 2 * GIB + 1, "ten 1 GiB volumes in a 2 GiB pool"
    base = pool_file_allocated(d)
    assert base < 600 * MIB, f"allocation follows writes, not sizes: {base}"
    d.docker("run", "--rm", "-v", "over0:/d", d.image, "dd", "if=/dev/urandom", "of=/d/f", "bs=1M", "count=500")
    grown = pool_file_allocated(d)
    assert grown - base > 450 * MIB
    d.docker("volume", "rm", "over0")
    returned = pool_file_allocated(d)
    assert grown - returned > 450 * MIB, (base, grown, returned)


def test_bad_thin_options_change_nothing(thin_daemon):
    d = thin_daemon
    for opts, msg in ((["-o", "size=1X"], "invalid size"), ([], "needs a size"), (["-o", "size=1G", "-o", "fs=ntfs"], "invalid fs"),
                      (["-o", "size=1G", "-o", "colour=red"], "invalid option")):
        p = d.docker("volume", "create", "-d", "thin", *opts, "bad", check=False)
        assert p.returncode != 0 and msg in p.stderr, p.stderr
    assert d.docker("volume", "ls", "-q").stdout == ""
