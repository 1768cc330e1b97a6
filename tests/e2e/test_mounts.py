"""--mount (HostConfig.Mounts): volume, bind and tmpfs mounts, Docker's
errors, and volume-subpath resolved without following any symlink (issue 4).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid

import pytest

ERR = "Error response from daemon"




def run(daemon, image, *args, check=True):
    return daemon.docker("run", "--rm", *args[:-1], image, "sh", "-c", args[-1], check=check)


def test_volume_bind_and_tmpfs_mounts(daemon, image, uniq):
    vol = f"{uniq}-v"
    run(daemon, image, "--mount", f"type=volume,src={vol},dst=/d", "echo kept > /d/f")
    assert run(daemon, image, "--mount", f"type=volume,source={vol},target=/d,readonly", "cat /d/f").stdout == "kept\n"
    ro = run(daemon, image, "--mount", f"type=volume,src={vol},dst=/d,ro", "echo x > /d/g", check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    host = tempfile.mkdtemp(dir="/tmp", prefix="mt-bind.")
    try:
        run(daemon, image, "--mount", f"type=bind,src={host},dst=/h", "echo via-mount > /h/out")
        assert open(f"{host}/out").read() == "via-mount\n"
    finally:
        shutil.rmtree(host)
    out = run(daemon, image, "--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=1770",
              "stat -c %a /t; grep ' /t ' /proc/mounts").stdout
    assert out.startswith("1770\n") and "tmpfs" in out and "size=1024k" in out


@pytest.mark.parametrize("args,message", [
    (["--mount", "type=bind,src=/nonexistent-berth-src,dst=/x"],
     'invalid mount config for type "bind": bind source path does not exist: /nonexistent-berth-src'),
    (["--mount", "type=tmpfs,src=foo,dst=/x"], 'invalid mount config for type "tmpfs": field Source must not be specified'),
    (["--mount", "type=volume,dst=/x,volume-subpath=sub"], "subpath is not allowed on an anonymous volume"),
    (["-v", "/tmp:/same", "--mount", "type=tmpfs,dst=/same"], "Duplicate mount point: /same"),
])
def test_mount_errors_are_docker_worded(daemon, image, uniq, args, message):
    p = daemon.docker("run", "--rm", "--name", f"{uniq}-c", *args, image, "true", check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert daemon.docker("ps", "-aq", "--filter", f"name={uniq}").stdout == ""


def prepare_subpaths(daemon, image, vol):
    run(daemon, image, "-v", f"{vol}:/d",
        "mkdir -p /d/dir && echo in-dir > /d/dir/f && echo a-file > /d/file && "
        "ln -s / /d/to-root && ln -s ../../ /d/dir/up && ln -s dir /d/to-dir")


def test_subpath_valid_folder_and_file(daemon, image, uniq):
    vol = f"{uniq}-sp"
    prepare_subpaths(daemon, image, vol)
    assert run(daemon, image, "--mount", f"type=volume,src={vol},dst=/x,volume-subpath=dir", "cat /x/f").stdout == "in-dir\n"
    assert run(daemon, image, "--mount", f"type=volume,src={vol},dst=/x,volume-subpath=file", "cat /x").stdout == "a-file\n"


@pytest.mark.parametrize("sub", ["..", "../", "dir/../..", "/etc", "to-root", "to-root/etc", "dir/up", "dir/up/etc", "to-dir", "missing"])
def test_subpath_attacks_are_refused(daemon, image, uniq, sub):
    vol = f"{uniq}-sp"
    prepare_subpaths(daemon, image, vol)
    p = run(daemon, image, "--mount", f"type=volume,src={vol},dst=/x,volume-subpath={sub}", "ls /x", check=False)
    assert p.returncode != 0, p.stdout
    assert "invalid volume subpath" in p.stderr
    assert "docker" not in p.stdout and "etc" not in p.stdout, "nothing of the host may be visible"


def test_subpath_symlink_swapped_during_mounts_never_escapes(daemon, image, uniq):
    """A container flips `sw` between a folder and a symlink to / as fast as
    it can while other containers mount it as a sub-path: each mount either
    is refused or shows the folder's marker, never the host's root."""
    vol = f"{uniq}-race"
    run(daemon, image, "-v", f"{vol}:/d", "mkdir -p /d/real && echo marker > /d/real/marker")
    flipper = f"{uniq}-flipper"
    daemon.docker("run", "-d", "--name", flipper, "-v", f"{vol}:/d", image, "sh", "-c",
                  "cd /d; while true; do rm -rf sw; ln -s / sw; rm -f sw; ln -s real sw; rm -f sw; mkdir sw; "
                  "echo marker > sw/marker; rm -rf sw; done")
    seen = {"refused": 0, "marker": 0}
    try:
        for _ in range(30):
            p = run(daemon, image, "--mount", f"type=volume,src={vol},dst=/x,volume-subpath=sw", "ls /x", check=False)
            if p.returncode == 0:
                assert p.stdout.split() in ([], ["marker"]), f"escaped: {p.stdout!r}"
                seen["marker"] += 1
            else:
                # Refused at resolution, or the folder vanished under the
                # mount (the runtime then cannot bind it): an error, never
                # an escape.
                assert ERR in p.stderr, p.stderr
                assert "etc" not in p.stdout and "usr" not in p.stdout
                seen["refused"] += 1
    finally:
        daemon.docker("rm", "-f", flipper, check=False)
    assert seen["refused"] + seen["marker"] == 30
