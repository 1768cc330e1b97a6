"""--volumes-from and the seed's data-container pattern (issue 4, first part).

A data container made with `docker create -v /data` owns an anonymous
volume; other containers reach it through `--volumes-from`, back it up with
tar into a bind-mounted host folder, and restore it into a new named volume.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid

import pytest




def test_data_container_backup_and_restore(daemon, image, uniq):
    store = f"{uniq}-store"
    daemon.docker("create", "-v", "/data", "--name", store, image, "true")
    daemon.docker("run", "--rm", "--volumes-from", store, image,
                  "sh", "-c", "echo x > /data/f && mkdir -p /data/sub && seq 1 500 > /data/sub/n")
    backup = tempfile.mkdtemp(dir="/tmp", prefix="vf-backup.")
    try:
        daemon.docker("run", "--rm", "--volumes-from", store, "-v", f"{backup}:/backup", image,
                      "tar", "cf", "/backup/data.tar", "-C", "/data", ".")
        restored = f"{uniq}-restored"
        daemon.docker("run", "--rm", "-v", f"{restored}:/data", "-v", f"{backup}:/backup", image,
                      "tar", "xf", "/backup/data.tar", "-C", "/data")
        digest = "find /data -type f | sort | xargs md5sum"
        original = daemon.docker("run", "--rm", "--volumes-from", store, image, "sh", "-c", digest).stdout
        copy = daemon.docker("run", "--rm", "-v", f"{restored}:/data", image, "sh", "-c", digest).stdout
        assert original == copy
        assert "/data/f" in original and "/data/sub/n" in original
    finally:
        shutil.rmtree(backup, ignore_errors=True)


def test_volumes_from_modes(daemon, image, uniq):
    src = f"{uniq}-src"
    vol = f"{uniq}-vol"
    daemon.docker("create", "-v", f"{vol}:/rw", "-v", f"{uniq}-ro:/ro:ro", "--name", src, image, "true")
    ok = daemon.docker("run", "--rm", "--volumes-from", src, image, "sh", "-c", "echo a > /rw/a", check=False)
    assert ok.returncode == 0, ok.stderr
    ro_all = daemon.docker("run", "--rm", "--volumes-from", f"{src}:ro", image, "sh", "-c", "echo a > /rw/b", check=False)
    assert ro_all.returncode != 0 and "Read-only file system" in ro_all.stderr
    stays_ro = daemon.docker("run", "--rm", "--volumes-from", f"{src}:rw", image, "sh", "-c", "echo a > /ro/c", check=False)
    assert stays_ro.returncode != 0 and "Read-only file system" in stays_ro.stderr
    bad = daemon.docker("run", "--rm", "--volumes-from", f"{src}:xx", image, "true", check=False)
    assert bad.returncode != 0 and "invalid mode for volumes-from: xx" in bad.stderr
    missing = daemon.docker("run", "--rm", "--volumes-from", f"{uniq}-nosuch", image, "true", check=False)
    assert missing.returncode != 0 and "No such container" in missing.stderr


def test_rm_v_keeps_anonymous_volume_used_through_volumes_from(daemon, image, uniq):
    store = f"{uniq}-store"
    user = f"{uniq}-user"
    daemon.docker("create", "-v", "/data", "--name", store, image, "true")
    anon = daemon.docker("inspect", "-f", "{{(index .Mounts 0).Name}}", store).stdout.strip()
    daemon.docker("create", "--volumes-from", store, "--name", user, image, "true")
    daemon.docker("rm", "-v", store)
    names = daemon.docker("volume", "ls", "-q").stdout.split()
    assert anon in names, "still used by the other container"
    held = daemon.docker("volume", "rm", anon, check=False)
    assert held.returncode != 0 and "volume is in use" in held.stderr
    daemon.docker("rm", "-v", user)
    assert anon in daemon.docker("volume", "ls", "-q").stdout.split(), "rm -v removes only volumes the container created"
    daemon.docker("volume", "rm", anon)
