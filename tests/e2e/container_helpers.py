"""Helpers shared by the container test modules: a container's status as
`docker ps` shows it, and waiting for a line in its logs; what a daemon's
root left on the host (its shims, the processes in its containers'
cgroups, loop devices) and a last-resort scrub of it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid


def unique(prefix: str) -> str:
    """A name no other test (or parallel run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(pred, timeout=15.0, what="condition"):
    """Polls ``pred`` until it returns something true (returned), at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ps_status(daemon, name, all=True) -> str | None:
    """The STATUS column of `docker ps [-a]` for container `name`, or None."""
    args = ["ps", "--format", "{{.Names}}\t{{.Status}}"]
    if all:
        args.insert(1, "-a")
    for line in daemon.docker(*args).stdout.splitlines():
        n, _, status = line.partition("\t")
        if n == name:
            return status
    return None


def wait_for_log(daemon, name, text, timeout=15.0) -> str:
    """Waits until `text` is in `docker logs name` (stdout or stderr);
    returns the logs."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        p = daemon.docker("logs", name, check=False)
        out = p.stdout + p.stderr
        if text in out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in logs of {name} after {timeout}s: {out!r}")


# --- host state of a berth root: shims, container processes, mounts, loops ---
# (used by the crash harness and the concurrency suite)

_CGROUP_ID = re.compile(r"/berth/([0-9a-f]{64})(?:/|$)", re.M)


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (R, S, Z, ...), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    return bool(pid) and process_state(pid) not in (None, "Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def nat_rules_of(ids) -> list[tuple[str, str]]:
    """The nat-table rules netavark made for any of ``ids`` (its port
    forwarding rules name the container id in a comment)."""
    if not ids:
        return []
    out = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    return [(cid, line) for line in out.splitlines() for cid in ids if f"id: {cid}" in line]


def berth_shims(root: str) -> dict[int, str]:
    """{pid: container id} of the `berth shim` processes whose state folder
    lies under ``root`` (a daemon's unique root)."""
    base = os.path.realpath(root).rstrip("/") + "/"
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        args = cmdline(int(entry))
        if "shim" not in args or not any(a.startswith(base) for a in args):
            continue
        if not process_alive(int(entry)):
            continue
        cid = args[args.index("--id") + 1] if "--id" in args[:-1] else "?"
        found[int(entry)] = cid
    return found


def _mount_ns(pid) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def container_processes(root: str | None = None) -> dict[str, list[int]]:
    """{container id: [pids]} of live processes in a berth container's
    cgroup (``/berth/<id>`` in /proc/PID/cgroup). With ``root``, only those
    of that daemon, so another daemon's containers on the same host are
    left out: a process in a mount namespace of its own belongs to ``root``
    when one line of its mount table names both the folder (with a
    trailing slash, so ``/tmp/berth-ab`` never matches ``/tmp/berth-abc``)
    and the process's own container id (its root's overlay, upperdir
    ``ROOT/containers/<id>/upper``); one in ours (a shim) when its command
    line names the folder. The id matters: a container of another daemon
    that is still being set up has a copy of every mount of the host, this
    daemon's included, until its pivot_root."""
    base = os.path.realpath(root).rstrip("/") + "/" if root else None
    host_ns = _mount_ns("self")
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                text = f.read()
        except OSError:
            continue
        m = _CGROUP_ID.search(text)
        if not m or not process_alive(int(entry)):
            continue
        if base is not None:
            if _mount_ns(entry) == host_ns:
                if not any(base in a for a in cmdline(int(entry))):
                    continue
            else:
                cid = m.group(1)
                try:
                    with open(f"/proc/{entry}/mountinfo", errors="surrogateescape") as f:
                        if not any(base in line and cid in line for line in f):
                            continue
                except OSError:
                    continue
        found.setdefault(m.group(1), []).append(int(entry))
    return found


def berth_cgroup_ids() -> set[str]:
    """Container ids that have a ``berth/<id>`` cgroup folder in any
    hierarchy."""
    base = "/sys/fs/cgroup"
    parents = [os.path.join(base, "berth")]
    try:
        parents += [os.path.join(base, h, "berth") for h in os.listdir(base)]
    except OSError:
        pass
    ids: set[str] = set()
    for parent in parents:
        try:
            ids |= {e for e in os.listdir(parent) if os.path.isdir(os.path.join(parent, e))}
        except OSError:
            continue
    return ids


def cgroup_dirs(cid: str) -> list[str]:
    """The cgroup folders of container ``cid`` (``berth/<id>`` under each
    v1 hierarchy, the v2 one, or a pure v2 mount)."""
    base = "/sys/fs/cgroup"
    found = []
    candidates = [os.path.join(base, "berth", cid)]
    try:
        candidates += [os.path.join(base, h, "berth", cid) for h in sorted(os.listdir(base))]
    except OSError:
        pass
    for path in candidates:
        if os.path.isdir(path):
            found.append(path)
    return found


def foreign_holders(dev: str, own_pids: set[int]) -> list[str]:
    """Processes outside berth whose own mount namespace has a filesystem
    of loop device ``dev`` (``loopN``) mounted: a namespace that copied the
    host's mounts (``unshare -m``, a service's private namespace) keeps such
    a filesystem, and its loop device, alive after berth unmounted it.
    Never counted: ``own_pids``, processes in the host's namespace, berth's
    daemons and shims, and processes in a berth container's cgroup. Each as
    ``"pid (command)"``."""
    try:
        with open(f"/sys/block/{dev}/dev") as f:
            majmin = f.read().strip()
    except OSError:
        return []
    host_ns = os.readlink("/proc/self/ns/mnt")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in own_pids:
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/mnt") == host_ns:
                continue  # the host's own namespace: berth's business
            with open(f"/proc/{entry}/cgroup") as f:
                if "/berth/" in f.read():
                    continue  # a berth container
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            if comm == "berth":
                continue  # a daemon or shim
            with open(f"/proc/{entry}/mountinfo", errors="surrogateescape") as f:
                if any(line.split()[2] == majmin for line in f):
                    found.append(f"{entry} ({comm})")
        except (OSError, IndexError):
            continue
    return found


def loop_backing_files() -> dict[str, str]:
    """{loopN: backing file} of every attached loop device (sysfs)."""
    out = {}
    try:
        devs = os.listdir("/sys/block")
    except OSError:
        return out
    for dev in devs:
        if not dev.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                out[dev] = f.read().strip()
        except OSError:
            continue
    return out


def scrub_root(daemon, container_ids=()) -> list[str]:
    """Last-resort cleanup after a test that may have left things behind on
    ``daemon``'s folder (the daemon must already be stopped): SIGKILLs the
    shims under its folder and the processes in the cgroups of
    ``container_ids``, unmounts everything under the folder, detaches the
    loop devices backed by files under it. Returns what it had to do (empty
    when nothing was left)."""
    from conftest import mounts_under, unmount_all_under

    done = []
    ids = set(container_ids)
    for pid, cid in berth_shims(daemon.dir).items():
        if daemon.proc is not None and pid == daemon.proc.pid:
            continue
        ids.add(cid)
        try:
            os.kill(pid, signal.SIGKILL)
            done.append(f"killed shim {pid} of {cid[:12]}")
        except ProcessLookupError:
            pass
    mine = container_processes(daemon.dir)
    for cid, pids in container_processes().items():
        if cid in ids or cid in mine:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    done.append(f"killed process {pid} of container {cid[:12]}")
                except ProcessLookupError:
                    pass
    base = os.path.realpath(daemon.dir).rstrip("/") + "/"
    # Read before unmounting: once the pool is unmounted, the backing file
    # of a volume's loop device no longer shows the full path.
    loops = {dev: b for dev, b in loop_backing_files().items() if b.startswith(base)}
    left = mounts_under(daemon.dir)
    if left:
        done.append(f"unmounted {left}")
        unmount_all_under(daemon.dir)
    # Volumes' loop devices first, the pool's (which holds their images) last.
    for dev, backing in sorted(loops.items(), key=lambda kv: kv[1].endswith("/thin/pool.img")):
        _run_quiet(["losetup", "-d", f"/dev/{dev}"])
        done.append(f"detached /dev/{dev} ({backing})")
        time.sleep(0.2)
        if os.path.exists(f"/sys/block/{dev}/loop/backing_file") and _thaw(dev):
            done.append(f"thawed a frozen filesystem on /dev/{dev} (its superblock held the loop device)")
    return done


def _run_quiet(argv) -> int:
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              check=False, timeout=20).returncode
    except subprocess.TimeoutExpired:
        return -1


def _thaw(dev: str) -> bool:
    """A filesystem left frozen keeps its superblock, and so its loop device
    (autoclear), alive after every unmount: mount it again (the kernel hands
    back the same superblock), thaw it, unmount it. Returns whether it was
    frozen."""
    import tempfile

    where = tempfile.mkdtemp(prefix="thaw-", dir="/tmp")
    try:
        if _run_quiet(["mount", f"/dev/{dev}", where]) != 0:
            return False
        thawed = _run_quiet(["fsfreeze", "-u", where]) == 0
        _run_quiet(["umount", where])
        return thawed
    finally:
        try:
            os.rmdir(where)
        except OSError:
            pass


FREEZER_FILES = ("/sys/fs/cgroup/freezer/berth/{}/freezer.state",  # cgroup v1
                 "/sys/fs/cgroup/berth/{}/cgroup.freeze")          # cgroup v2


def freezer_state(cid: str) -> str | None:
    """A container's freezer: FROZEN/THAWED (v1) or 1/0 (v2); None if none."""
    for path in FREEZER_FILES:
        try:
            with open(path.format(cid)) as f:
                return f.read().strip()
        except OSError:
            continue
    return None


def freeze_behind_berths_back(cid: str) -> None:
    """Freezes a container's cgroup directly (what a commit cut by a crash
    leaves)."""
    for path, value in zip(FREEZER_FILES, ("FROZEN", "1")):
        if os.path.exists(path.format(cid)):
            with open(path.format(cid), "w") as f:
                f.write(value)
            return
    raise AssertionError(f"no freezer for {cid}")
