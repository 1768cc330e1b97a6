"""`berth volume export|import` (as `podman volume export|import`): a
volume's contents as a tar stream that keeps everything a filesystem
records, read and written by GNU tar too; imports are all or nothing
(hostile, cut-short or conflicting archives change nothing); the mount an
export or import takes is released on every path, a crash included."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import time

import pytest

from conftest import UnixHTTPConnection
from tree_helpers import MIB, fill_sample, tree_digest


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="berth-archive-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def export_to(daemon, volume: str, path: str) -> None:
    daemon.berth_cli("volume", "export", volume, "-o", path)


def import_raw(daemon, volume: str, data: bytes):
    return daemon.api("POST", f"/berth/v1/volumes/{volume}/import", body=data,
                      headers={"Content-Type": "application/x-tar"})


def staging_left(path: str) -> list[str]:
    return [n for n in os.listdir(path) if n.startswith(".berth-import-")]


def test_round_trip_keeps_everything(daemon, uniq, work):
    src, dst = f"{uniq}src", f"{uniq}dst"
    daemon.docker("volume", "create", src)
    daemon.docker("volume", "create", dst)
    fill_sample(daemon.mountpoint(src))
    archive = os.path.join(work, "v.tar")
    export_to(daemon, src, archive)
    assert os.path.getsize(archive) < 8 * MIB, "the 512 MiB hole is not in the archive"
    daemon.berth_cli("volume", "import", dst, archive)
    assert tree_digest(daemon.mountpoint(dst)) == tree_digest(daemon.mountpoint(src))
    sparse = os.stat(os.path.join(daemon.mountpoint(dst), "sparse"))
    assert sparse.st_blocks * 512 < 8 * MIB, "holes stay holes on import"
    assert staging_left(daemon.mountpoint(dst)) == []


def test_gnu_tar_reads_exports_and_writes_imports(daemon, uniq, work):
    src, dst = f"{uniq}src", f"{uniq}dst"
    daemon.docker("volume", "create", src)
    daemon.docker("volume", "create", dst)
    fill_sample(daemon.mountpoint(src), sparse_mib=64)
    archive = os.path.join(work, "v.tar")
    export_to(daemon, src, archive)
    out = os.path.join(work, "out")
    os.mkdir(out)
    subprocess.run(["tar", "--xattrs", "--xattrs-include=user.*", "-xpf", archive, "-C", out],
                   check=True)
    assert tree_digest(out) == tree_digest(daemon.mountpoint(src))
    for flag, name in (("--gzip", "v.tgz"), ("--zstd", "v.tar.zst")):
        made = os.path.join(work, name)
        subprocess.run(["tar", "--xattrs", "--xattrs-include=user.*", flag, "-cf", made,
                        "-C", out, "."], check=True)
        vol = f"{uniq}{name.replace('.', '')}"
        daemon.docker("volume", "create", vol)
        daemon.berth_cli("volume", "import", vol, made)
        assert tree_digest(daemon.mountpoint(vol)) == tree_digest(out), name


@pytest.mark.parametrize("version", ["0.0", "0.1", "1.0"])
def test_gnu_tar_sparse_archives_import_as_sparse_files(daemon, uniq, work, version):
    """`tar --sparse` in the default (posix) format stores a sparse file as
    a placeholder entry plus GNU.sparse.* pax records; berth must import
    the real file, holes included, not the placeholder."""
    src = os.path.join(work, "src")
    os.makedirs(os.path.join(src, "d"))
    holes = os.path.join(src, "d", "holes")
    with open(holes, "wb") as f:
        f.write(b"head")
        f.seek(8 * MIB)
        f.write(os.urandom(5000))
        f.truncate(64 * MIB)
    os.chown(holes, 1234, 4321)
    os.setxattr(holes, "user.k", b"v")
    with open(os.path.join(src, "plain"), "w") as f:
        f.write("plain")
    archive = os.path.join(work, "s.tar")
    subprocess.run(["tar", "--format=posix", "--sparse", f"--sparse-version={version}",
                    "--xattrs", "--xattrs-include=user.*", "--numeric-owner", "-cf", archive,
                    "-C", src, "."], check=True)
    with open(archive, "rb") as f:
        assert b"GNU.sparse." in f.read(), "GNU tar wrote no pax sparse records"
    vol = f"{uniq}sp"
    daemon.docker("volume", "create", vol)
    daemon.berth_cli("volume", "import", vol, archive)
    got = daemon.mountpoint(vol)
    assert sorted(os.listdir(got)) == ["d", "plain"]
    assert tree_digest(got) == tree_digest(src)
    assert os.stat(os.path.join(got, "d", "holes")).st_blocks * 512 < MIB, "holes stay holes"


def test_hostile_sparse_maps_change_nothing(daemon, uniq):
    vol = f"{uniq}hs"
    daemon.docker("volume", "create", vol)
    # A 1.0 map that claims more data than the entry carries.
    data = b"1\n0\n999\n".ljust(512, b"\0") + b"x" * 10
    bad = tar_of({"GNUSparseFile.1/f": data}, file_pax={
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
        "GNU.sparse.name": "f", "GNU.sparse.realsize": "2000"})
    status, body = import_raw(daemon, vol, bad)
    assert status == 400 and "sparse map" in body["message"], (status, body)
    # A real name that climbs out.
    out = tar_of({"GNUSparseFile.1/f": b"abc"}, file_pax={
        "GNU.sparse.map": "0,3", "GNU.sparse.size": "3", "GNU.sparse.name": "../escape"})
    status, body = import_raw(daemon, vol, out)
    assert status == 400, (status, body)
    assert os.listdir(daemon.mountpoint(vol)) == []


def test_thin_volume_round_trip_through_stdin(berth_factory, work):
    from busybox_image import import_busybox, remove_all_containers
    d = berth_factory(extra_args=["--thin-pool-size", "2G"]).start()
    image = import_busybox(d, "archive-test:v1")
    try:
        d.docker("volume", "create", "plain")
        fill_sample(d.mountpoint("plain"), sparse_mib=64)
        archive = os.path.join(work, "v.tar")
        export_to(d, "plain", archive)
        d.docker("volume", "create", "-d", "thin", "-o", "size=256M", "thin")
        with open(archive, "rb") as f:
            p = subprocess.run([d.bin, "-H", d.host, "volume", "import", "thin", "-"],
                               stdin=f, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        d.docker("run", "-d", "--name", "holder", "-v", "thin:/d", image, "sleep", "60")
        mountpoint = json.loads(d.docker("volume", "inspect", "thin").stdout)[0]["Mountpoint"]
        want = tree_digest(d.mountpoint("plain"))
        got = {k: v for k, v in tree_digest(mountpoint).items() if k != "lost+found"}
        assert got == want
        again = os.path.join(work, "again.tar")
        export_to(d, "thin", again)  # while the container holds it
        d.docker("rm", "-f", "holder")
        d.docker("volume", "rm", "thin")  # the export's mount was released
    finally:
        remove_all_containers(d)


def hostile(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name, data=b"x", **kw):
            info = tarfile.TarInfo(name)
            for k, v in kw.items():
                setattr(info, k, v)
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
        add("ok-first")  # something valid before the attack: it must not land either
        if kind == "dotdot":
            add("../escaped")
        elif kind == "symlink-parent":
            add("link", type=tarfile.SYMTYPE, linkname="/tmp")
            add("link/escaped")
        elif kind == "hardlink-out":
            add("passwd", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif kind == "hardlink-dotdot":
            add("passwd", type=tarfile.LNKTYPE, linkname="../../../../etc/passwd")
    data = buf.getvalue()
    if kind == "truncated":
        return data[:700]
    if kind == "garbage":
        return b"this is not a tar archive at all" * 40
    return data


@pytest.mark.parametrize("kind", ["dotdot", "symlink-parent", "hardlink-out",
                                  "hardlink-dotdot", "truncated", "garbage"])
def test_bad_archives_change_nothing(daemon, uniq, kind):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    with open(os.path.join(daemon.mountpoint(vol), "keep"), "w") as f:
        f.write("keep")
    before = tree_digest(daemon.mountpoint(vol))
    status, body = import_raw(daemon, vol, hostile(kind))
    assert status == 400, (kind, status, body)
    assert body["message"].startswith(f"import {vol}: "), body
    assert tree_digest(daemon.mountpoint(vol)) == before
    assert not os.path.exists("/tmp/escaped") and not os.path.exists(
        os.path.join(os.path.dirname(daemon.mountpoint(vol)), "escaped"))
    daemon.docker("volume", "rm", vol)  # no mount left behind


def test_import_merges_and_refuses_kind_conflicts(daemon, uniq, work):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    root = daemon.mountpoint(vol)
    os.makedirs(os.path.join(root, "dir/inner"))
    for name, text in (("dir/old", "old"), ("dir/replaced", "before"), ("top", "top")):
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    src = os.path.join(work, "src")
    os.makedirs(os.path.join(src, "dir"))
    with open(os.path.join(src, "dir/replaced"), "w") as f:
        f.write("after")
    with open(os.path.join(src, "dir/new"), "w") as f:
        f.write("new")
    archive = os.path.join(work, "merge.tar")
    subprocess.run(["tar", "-cf", archive, "-C", src, "."], check=True)
    daemon.berth_cli("volume", "import", vol, archive)
    read = lambda n: open(os.path.join(root, n)).read()
    assert (read("dir/old"), read("dir/replaced"), read("dir/new"), read("top")) == \
        ("old", "after", "new", "top")
    # A file where the volume has a folder: refused, nothing moved.
    conflict = os.path.join(work, "conflict")
    os.makedirs(conflict)
    for name in ("aaa-first", "dir"):
        with open(os.path.join(conflict, name), "w") as f:
            f.write("file")
    archive = os.path.join(work, "conflict.tar")
    subprocess.run(["tar", "-cf", archive, "-C", conflict, "."], check=True)
    before = tree_digest(root)
    p = daemon.berth_cli("volume", "import", vol, archive, check=False)
    assert p.returncode != 0 and "dir is a folder on one side" in p.stderr, p.stderr
    assert tree_digest(root) == before and staging_left(root) == []


def test_missing_volume_and_terminal_output(daemon, uniq, work):
    p = daemon.berth_cli("volume", "export", f"{uniq}none", "-o", os.path.join(work, "x"),
                         check=False)
    assert p.returncode != 0 and "no such volume" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(work, "x"))
    status, body = import_raw(daemon, f"{uniq}none", hostile("dotdot"))
    assert status == 404, body


def test_client_going_away_and_kill9_release_the_mount(berth_factory, work):
    d = berth_factory().start()
    d.docker("volume", "create", "big")
    block = os.urandom(MIB)
    for i in range(512):
        with open(os.path.join(d.mountpoint("big"), f"f{i:03d}"), "wb") as f:
            f.write(block)
    conn = UnixHTTPConnection(d.sock, timeout=60)
    conn.request("GET", "/berth/v1/volumes/big/export")
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read(MIB)
    conn.close()
    deadline = time.monotonic() + 30
    while d.docker("volume", "rm", "big", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the export never let the volume go"
        time.sleep(0.2)
    # kill -9 during an import: after the restart the volume is not held.
    d.docker("volume", "create", "target")
    archive = os.path.join(work, "big.tar")
    src = os.path.join(work, "src")
    os.makedirs(src)
    for i in range(512):
        with open(os.path.join(src, f"f{i:03d}"), "wb") as f:
            f.write(block)
    subprocess.run(["tar", "-cf", archive, "-C", src, "."], check=True)
    proc = subprocess.Popen([d.bin, "-H", d.host, "volume", "import", "target", archive],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not any(n.startswith(".berth-import-") for n in os.listdir(d.mountpoint("target"))):
        assert time.monotonic() < deadline, "the import never began staging"
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.5))  # somewhere in staging or merging
    d.kill9()
    proc.wait(timeout=30)
    d.start()
    # Start-up settled it: nothing staged is left, and the volume holds
    # none of the archive (killed before the merge) or all of it (the merge
    # was finished).
    assert staging_left(d.mountpoint("target")) == []
    assert len(os.listdir(d.mountpoint("target"))) in (0, 512)
    d.docker("volume", "rm", "target")  # the crashed import's mount id was dropped


def test_import_is_refused_while_a_container_runs_with_the_volume(daemon, image, uniq, work):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    cid = daemon.docker("run", "-d", "-v", f"{vol}:/d", image, "sleep", "60").stdout.strip()
    try:
        status, body = import_raw(daemon, vol, tar_of({"f": b"x"}))
        assert status == 409, body
        assert body["message"] == f"import {vol}: volume is in use - [{cid}]"
        assert os.listdir(daemon.mountpoint(vol)) == []
    finally:
        daemon.docker("rm", "-f", cid)


def tar_of(files: dict, root_mode: int | None = None, pax: dict | None = None,
           file_pax: dict | None = None) -> bytes:
    """A pax tar of ``files`` (None: a folder, with ``pax`` records; bytes:
    a file, with ``file_pax`` records)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if root_mode is not None:
            info = tarfile.TarInfo("./")
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, root_mode, 999, 999
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                info.pax_headers = dict(pax or {})
                tar.addfile(info)
            else:
                info.size = len(data)
                info.pax_headers = dict(file_pax or {})
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_an_archive_cut_between_entries_is_refused(daemon, uniq):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    whole = tar_of({"a": b"1" * 600, "b": b"2" * 10})
    cut = whole[:3 * 512]  # the PAX-free header and two data blocks of "a"; no end block
    status, body = import_raw(daemon, vol, cut)
    assert status == 400 and "cut short" in body["message"], body
    assert os.listdir(daemon.mountpoint(vol)) == []
    assert import_raw(daemon, vol, whole)[0] == 204


def test_the_archive_root_sets_the_volume_root(daemon, uniq):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    assert import_raw(daemon, vol, tar_of({"f": b"x"}, root_mode=0o700))[0] == 204
    st = os.stat(daemon.mountpoint(vol))
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o700, 999, 999)


def test_archives_cannot_forge_staging_folders(daemon, uniq):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    forged = tar_of({".berth-import-evil": None, ".berth-import-evil/data": b"keep"},
                    pax={"SCHILY.xattr.trusted.berth.import": "merging"})
    assert import_raw(daemon, vol, forged)[0] == 204
    evil = os.path.join(daemon.mountpoint(vol), ".berth-import-evil")
    assert "trusted.berth.import" not in os.listxattr(evil)
    assert import_raw(daemon, vol, tar_of({"other": b"x"}))[0] == 204
    assert open(os.path.join(evil, "data")).read() == "keep", "user data, not staging"


def test_start_up_finishes_a_merge_a_crash_cut(berth_factory):
    d = berth_factory().start()
    d.docker("volume", "create", "vol")
    root = d.mountpoint("vol")
    staging = os.path.join(root, ".berth-import-crashed")
    os.makedirs(os.path.join(staging, "sub"))
    with open(os.path.join(staging, "sub", "moved"), "w") as f:
        f.write("late")
    os.setxattr(staging, "trusted.berth.import", b"merging")
    leftover = os.path.join(root, ".berth-import-unmerged")
    os.makedirs(leftover)
    os.setxattr(leftover, "trusted.berth.import", b"staged")
    d.stop()
    import sqlite3
    db = sqlite3.connect(d.db_path)
    with db:
        db.execute("INSERT INTO volume_mounts (volume, mount_id) VALUES ('vol', "
                   "'berth-op-import-0123456789abcdef')")
    db.close()
    d.start()
    assert open(os.path.join(root, "sub", "moved")).read() == "late"
    assert sorted(os.listdir(root)) == ["sub"]
    d.docker("volume", "rm", "vol")  # the mount id was released


def test_tmpfs_volumes_are_refused(daemon, uniq):
    vol = f"{uniq}tmp"
    daemon.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", vol)
    status, body = import_raw(daemon, vol, tar_of({"f": b"x"}))
    assert status == 400 and "tmpfs" in body["message"], body


def test_merging_never_follows_symlinks_in_the_volume(daemon, uniq, work):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    root = daemon.mountpoint(vol)
    victim_dir = os.path.join(work, "victim")
    os.makedirs(victim_dir)
    victim_file = os.path.join(work, "victim-file")
    with open(victim_file, "w") as f:
        f.write("untouched")
    os.symlink(victim_dir, os.path.join(root, "d"))
    os.symlink(victim_file, os.path.join(root, "f"))
    status, body = import_raw(daemon, vol, tar_of({"d": None, "d/x": b"in"}))
    assert status == 409 and "d is a folder on one side" in body["message"], body
    assert os.listdir(victim_dir) == []
    assert import_raw(daemon, vol, tar_of({"f": b"new"}))[0] == 204
    assert not os.path.islink(os.path.join(root, "f"))
    assert open(os.path.join(root, "f")).read() == "new"
    assert open(victim_file).read() == "untouched"


def test_merged_folders_take_the_archives_attributes(daemon, uniq):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    root = daemon.mountpoint(vol)
    os.makedirs(os.path.join(root, "d"))
    data = tar_of({"d": None, "d/f": b"x"}, root_mode=0o750, pax={"SCHILY.xattr.user.tag": "gold"})
    assert import_raw(daemon, vol, data)[0] == 204
    assert os.getxattr(os.path.join(root, "d"), "user.tag") == b"gold"
    assert os.stat(root).st_mode & 0o7777 == 0o750


def test_a_merge_that_fails_part_way_is_finished_at_start_up(berth_factory):
    d = berth_factory().start()
    d.docker("volume", "create", "vol")
    locked = os.path.join(d.mountpoint("vol"), "locked")
    os.makedirs(locked)
    subprocess.run(["chattr", "+i", locked], check=True)
    try:
        status, body = import_raw(d, "vol", tar_of({"aaa": b"1", "locked": None,
                                                    "locked/new": b"2"}))
        assert status == 500 and "finishes it" in body["message"], body
        assert [n for n in os.listdir(d.mountpoint("vol"))
                if n.startswith(".berth-import-")], "the staging folder stays"
        p = d.docker("volume", "rm", "vol", check=False)
        assert p.returncode != 0 and "in use" in p.stderr, "held until settled"
    finally:
        subprocess.run(["chattr", "-i", locked], check=True)
    d.restart()
    assert open(os.path.join(locked, "new")).read() == "2"
    assert staging_left(d.mountpoint("vol")) == []
    d.docker("volume", "rm", "vol")


def raw_header(name: bytes, kind: bytes, size_field: bytes, extra=None) -> bytes:
    """One ustar header block, checksum included; ``extra`` patches bytes."""
    h = bytearray(512)
    h[:len(name)] = name
    h[100:108] = b"0000644\0"
    h[124:136] = size_field
    h[156:157] = kind
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    for offset, value in (extra or {}).items():
        h[offset:offset + len(value)] = value
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


@pytest.mark.parametrize("kind,words", [("pax", "archive header of"), ("sparse", "sparse file of")])
def test_archive_bombs_are_refused_at_once(daemon, uniq, kind, words):
    vol = f"{uniq}v"
    daemon.docker("volume", "create", vol)
    if kind == "pax":  # a PAX header claiming 8 GiB: the tar reader would buffer it whole
        data = raw_header(b"PaxHeaders/x", b"x", b"77777777777\0") + b"1 " * 1024
    else:  # a sparse entry claiming 2^54 bytes of holes
        data = raw_header(b"bomb", b"S", b"00000000000\0",
                          {257: b"ustar  \0",  # GNU magic: sparse entries are GNU's
                           483: b"\x80\x00\x00\x00\x00\x40" + b"\x00" * 6})
        data += b"\0" * 1024
    started = time.monotonic()
    status, body = import_raw(daemon, vol, data)
    assert status == 400 and words in body["message"], body
    assert time.monotonic() - started < 10
    assert os.listdir(daemon.mountpoint(vol)) == []


def test_import_create_makes_the_volume_and_removes_it_on_failure(daemon, uniq, work):
    src = f"{uniq}src"
    daemon.docker("volume", "create", src)
    fill_sample(daemon.mountpoint(src))
    archive = os.path.join(work, "a.tar")
    export_to(daemon, src, archive)
    # Without --create a missing volume is an error, and nothing is made.
    p = daemon.berth_cli("volume", "import", f"{uniq}none", archive, check=False)
    assert p.returncode != 0 and "no such volume" in p.stderr, p.stderr
    assert daemon.api("GET", f"/volumes/{uniq}none")[0] == 404
    daemon.berth_cli("volume", "import", "--create", "--label", "team=db", f"{uniq}new", archive)
    assert tree_digest(daemon.mountpoint(f"{uniq}new")) == tree_digest(daemon.mountpoint(src))
    made = json.loads(daemon.docker("volume", "inspect", f"{uniq}new").stdout)[0]
    assert made["Labels"] == {"team": "db"} and made["Driver"] == "local"
    # A bad archive with --create leaves no volume behind.
    bad = os.path.join(work, "bad.tar")
    with open(bad, "wb") as f:
        f.write(hostile("dotdot"))
    p = daemon.berth_cli("volume", "import", "--create", f"{uniq}bad", bad, check=False)
    assert p.returncode != 0
    assert daemon.api("GET", f"/volumes/{uniq}bad")[0] == 404
    # Into an existing volume --create just imports (204, not 201).
    status, _ = daemon.api("POST", f"/berth/v1/volumes/{uniq}new/import?create=1",
                           body=tar_of({"extra": b"x"}), headers={"Content-Type": "application/x-tar"})
    assert status == 204
    status, _ = daemon.api("POST", f"/berth/v1/volumes/{uniq}other/import?create=1&opts=%5B%5D",
                           body=tar_of({"extra": b"x"}), headers={"Content-Type": "application/x-tar"})
    assert status == 400 and daemon.api("GET", f"/volumes/{uniq}other")[0] == 404


def test_podmans_export_and_import_paths(daemon, uniq):
    src, dst = f"{uniq}p1", f"{uniq}p2"
    daemon.docker("volume", "create", src)
    daemon.docker("volume", "create", dst)
    fill_sample(daemon.mountpoint(src))
    status, _, data = daemon.http("GET", f"/v4.0.0/libpod/volumes/{src}/export", None, None, 30.0)
    assert status == 200 and len(data) > 0
    status, _ = daemon.api("POST", f"/v4.0.0/libpod/volumes/{dst}/import", body=data,
                           headers={"Content-Type": "application/x-tar"})
    assert status == 204
    assert tree_digest(daemon.mountpoint(dst)) == tree_digest(daemon.mountpoint(src))
    assert daemon.api("GET", f"/libpod/volumes/{uniq}none/export")[0] == 404
