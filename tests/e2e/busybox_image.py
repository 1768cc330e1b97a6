"""A busybox test image made with `docker import` (no registry, no builder).

The root file system holds /bin/busybox (a copy of the host's static
busybox) and one symlink per applet from `busybox --list` (except
"busybox" itself: `ln -s busybox bin/busybox` would replace the binary by a
dangling self-link), plus /tmp, /etc/passwd and /etc/group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid

HOST_BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def _is_static(path: str) -> bool:
    try:
        out = subprocess.run(["file", "-L", path], capture_output=True, text=True).stdout
    except OSError:
        return True  # `file` missing: trust the brief (busybox-static)
    return "statically linked" in out or "static-pie" in out


def make_rootfs(dest: str) -> str:
    """Fills ``dest`` with a busybox root file system and returns it."""
    if not os.path.exists(HOST_BUSYBOX):
        raise AssertionError(f"busybox not found at {HOST_BUSYBOX} (apt-get install busybox-static)")
    if not _is_static(HOST_BUSYBOX):
        raise AssertionError(f"{HOST_BUSYBOX} is not statically linked (install busybox-static)")
    bindir = os.path.join(dest, "bin")
    os.makedirs(bindir, exist_ok=True)
    shutil.copy2(HOST_BUSYBOX, os.path.join(bindir, "busybox"))
    os.chmod(os.path.join(bindir, "busybox"), 0o755)
    applets = subprocess.run([HOST_BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in applets:
        if name == "busybox" or "/" in name or not name:
            continue
        link = os.path.join(bindir, name)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for d in ("tmp", "etc", "root", "home", "var", "proc", "sys", "dev"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n"
                "user:x:1000:1000:user:/home:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    assert os.path.isfile(os.path.join(bindir, "busybox"))
    assert not os.path.islink(os.path.join(bindir, "busybox"))
    return dest


def write_files(root: str, files) -> None:
    """Writes text files (``{relative path: text}`` or pairs) under
    ``root``, making their folders."""
    for rel, data in (files.items() if hasattr(files, "items") else files):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(data)


def temp_folder(prefix: str):
    """Generator for a fixture: a fresh folder under /tmp, removed after."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def rootfs_tar(dest_tar: str) -> str:
    """Writes the rootfs as an uncompressed tar file (entries relative to /)."""
    work = tempfile.mkdtemp(prefix="bbroot-", dir="/tmp")
    try:
        make_rootfs(work)
        subprocess.run(["tar", "-C", work, "-cf", dest_tar, "."], check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest_tar


def import_busybox(daemon, ref: str | None = None, *changes: str) -> str:
    """`tar -C dir -c . | docker import - ref` on ``daemon`` (BerthDaemon or
    DockerDaemon). Returns the reference."""
    ref = ref or f"bbtest-{uuid.uuid4().hex[:8]}:latest"
    work = tempfile.mkdtemp(prefix="bbimp-", dir="/tmp")
    try:
        tar = rootfs_tar(os.path.join(work, "rootfs.tar"))
        args = ["import"]
        for c in changes:
            args += ["-c", c]
        args += [tar, ref]
        daemon.docker(*args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ref


# ---------------------------------------------------------------------------
# Daemon fixtures' helpers: containers outlive berth (live restore), so a
# daemon's cleanup must remove its containers first.
# ---------------------------------------------------------------------------


def remove_all_containers(daemon) -> None:
    """DELETE every container of ``daemon`` (force, with volumes)."""
    try:
        status, body = daemon.api("GET", "/containers/json?all=1", timeout=10)
    except OSError:
        return
    if status != 200 or not isinstance(body, list):
        return
    for c in body:
        try:
            daemon.api("DELETE", f"/containers/{c['Id']}?force=1&v=1", timeout=30)
        except OSError:
            pass


def kill_leftovers(daemon) -> None:
    """SIGKILLs processes whose command line names the daemon's unique temp
    folder (berth shims); they are ours."""
    import signal as _signal

    from conftest import pids_with_cmdline_containing

    for pid in pids_with_cmdline_containing(daemon.dir):
        if daemon.proc is not None and pid == daemon.proc.pid:
            continue
        try:
            os.kill(pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass


def berth_with_cleanup(extra_args=()):
    """Generator for a module fixture: a started BerthDaemon (with
    ``extra_args``) whose containers are force-removed before its cleanup."""
    from conftest import BerthDaemon

    d = BerthDaemon(extra_args=extra_args)
    try:
        d.start()
        yield d
    finally:
        try:
            if not d.running():
                try:
                    d.start()
                except BaseException:
                    pass
            if d.running():
                remove_all_containers(d)
        finally:
            try:
                d.stop()
            finally:
                kill_leftovers(d)
                d.cleanup()
