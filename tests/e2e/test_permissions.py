"""Issue 15, defect 3: no other host user can reach anything under berth's
root (the class of Docker's CVE-2021-41091).

After a realistic workload — local and thin volumes, a container with a
secret in `-e`, a set-uid-root binary a container left in a volume, a thin
snapshot, an import — an unprivileged user made up for the test (a fresh
uid with no passwd entry and no groups, through `setpriv`) walks the root
and tries every path it knows: it can list, read, traverse or execute
nothing, and the set-uid attack that gave `euid=0` fails (before the fix it did:
`uid=… gid=… euid=0(root)`). The modes are
enforced at every start: a root loosened by hand (an older installation)
is tightened again by a restart.
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import textwrap

from busybox_image import import_busybox, remove_all_containers

SECRET = "hunter2-" + os.urandom(6).hex()

# Runs as the unprivileged user: prints JSON of what it could reach.
PROBE = textwrap.dedent("""
    import json, os, subprocess, sys
    root, targets = sys.argv[1], sys.argv[2:]
    reached = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        reached.append(["listed", dirpath])
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                with open(p, "rb") as fh:
                    fh.read(1)
                reached.append(["read", p])
            except OSError:
                pass
    for p in targets:
        try:
            os.stat(p)
            reached.append(["stat", p])
        except OSError:
            pass
        try:
            with open(p, "rb") as fh:
                fh.read(1)
            reached.append(["read", p])
        except OSError:
            pass
        if p.endswith("/id"):
            try:
                out = subprocess.run([p], capture_output=True, text=True).stdout
                reached.append(["exec", p, out.strip()])
            except OSError:
                pass
    print(json.dumps(reached))
""")


def free_uid() -> int:
    taken = set()
    with open("/etc/passwd") as f:
        for line in f:
            parts = line.split(":")
            if len(parts) > 2 and parts[2].isdigit():
                taken.add(int(parts[2]))
    while True:
        uid = random.randint(40000, 59999)
        if uid not in taken:
            return uid


def as_stranger(root: str, targets: list[str]) -> list:
    uid = free_uid()
    out = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
         sys.executable, "-c", PROBE, root, *targets],
        capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def workload(d, image) -> list[str]:
    """Volumes, containers, a snapshot, an import. Returns paths a
    stranger would aim at."""
    d.docker("volume", "create", "plain")
    d.docker("volume", "create", "-d", "thin", "-o", "size=64M", "capped")
    # A container leaves set-uid-root copies of the host's `id` (a program
    # that keeps its euid, unlike busybox) in both volumes.
    d.docker("run", "--rm", "-v", "plain:/d", "-v", "capped:/t", "-v", "/usr/bin/id:/host-id:ro",
             image, "sh", "-c",
             "cp /host-id /d/id && chmod 4755 /d/id && "
             "cp /host-id /t/id && chmod 4755 /t/id && echo data > /t/f")
    d.docker("run", "-d", "--name", "holder", "-e", f"PASSWORD={SECRET}", "-v", "capped:/t",
             image, "sh", "-c", f"echo {SECRET}; sleep 300")
    d.berth_cli("volume", "snapshot", "create", "capped", "s1")
    d.berth_cli("volume", "export", "plain", "-o", os.path.join(d.dir, "plain.tar"))
    d.docker("volume", "create", "copy")
    d.berth_cli("volume", "import", "copy", os.path.join(d.dir, "plain.tar"))
    cid = json.loads(d.docker("inspect", "holder").stdout)[0]["Id"]
    root = d.root
    cdir = f"{root}/containers/{cid}"
    return [
        f"{root}/berth.db", f"{root}/berth.db-wal",
        f"{root}/volumes/plain/_data/id", f"{root}/volumes/copy/_data/id",
        f"{root}/thin/mnt/capped/id", f"{root}/thin/mnt/capped/f",
        f"{root}/thin/pool.img", f"{cdir}/bundle/config.json",
        f"{cdir}/{cid}-json.log", f"{cdir}/rootfs/bin/busybox",
    ]


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_private(d, targets):
    root = d.root
    # The set-uid files are there and would work for whoever reaches them.
    for t in targets:
        if t.endswith("/id"):
            st = os.stat(t)
            assert st.st_uid == 0 and st.st_mode & stat.S_ISUID, t
    reached = as_stranger(root, targets)
    assert reached == [], f"an unprivileged user reached: {reached[:10]}"
    assert mode(root) == 0o710
    for sub in ("volumes", "images", "containers", "runtime", "thin"):
        assert mode(f"{root}/{sub}") == 0o700, sub
    assert mode(f"{root}/berth.db") == 0o600
    config = [t for t in targets if t.endswith("config.json")][0]
    assert mode(config) == 0o600


def test_nothing_under_the_root_is_reachable_by_another_user(berth_factory):
    d = berth_factory(extra_args=["--thin-pool-size", "2G"])
    # The root's parent is open to everyone, as /var/lib is (the test's own
    # temporary folder is 0700 and would hide the root by itself).
    os.chmod(d.dir, 0o755)
    d.start()
    try:
        image = import_busybox(d, "perm-bb:v1")
        targets = workload(d, image)
        assert_private(d, targets)

        # An older installation (or a root made by hand) with loose modes
        # is tightened at the next start.
        d.stop()
        for p in (d.root, f"{d.root}/volumes", f"{d.root}/containers", f"{d.root}/thin"):
            os.chmod(p, 0o755)
        os.chmod(f"{d.root}/berth.db", 0o644)
        d.start()
        assert_private(d, targets)
    finally:
        if d.running():
            remove_all_containers(d)
