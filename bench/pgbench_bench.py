#!/usr/bin/env python3
"""PostgreSQL in a container on a thin volume, a local volume, and dockerd's
local volume: pgbench TPS, in one run.

    python3 bench/pgbench_bench.py [--runs 3] [--seconds 20] [--scale 10]

It builds nothing (`cargo build --release` first; BERTH_BIN, DOCKER_BIN,
DOCKERD_BIN as for run_bench.py) and needs Debian's postgresql-15 on the
host. The image is made from the host's own PostgreSQL 15 (`postgres`,
`initdb` and every library `ldd` names, the share and lib folders) plus
busybox-static, imported into both engines as pgimg:1. For each target,
--runs times (targets alternating):

  * a fresh volume (berth thin: `--driver thin -o size=4G`; berth local;
    dockerd local), owned by uid 70 through the image's folder;
  * `docker run -d --network none -u 70:70` with the volume on
    /var/lib/pg and a host folder on /run/pg: initdb (trust, C locale),
    then postgres with its socket in /run/pg, fsync and
    synchronous_commit on (the defaults);
  * on the host: `pgbench -i -s SCALE`, then `pgbench -c 4 -j 2 -T
    SECONDS` through the socket; the TPS pgbench prints ("without initial
    connection time") is the result;
  * the container and the volume are removed.

Prints the TPS of every run and the median per target. Both daemons are
stopped by PID and their folders removed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402

PG = "/usr/lib/postgresql/15"
PG_SHARE = "/usr/share/postgresql/15"
IMAGE = "pgimg:1"
UID = 70


def libraries_of(binary: str) -> set[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = set()
    for line in out.splitlines():
        m = re.search(r"(/\S+)", line.split("=>")[-1])
        if m and os.path.exists(m.group(1)):
            libs.add(m.group(1))
    return libs


def copy_into(root: str, path: str) -> None:
    dest = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.copytree(path, dest, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(os.path.realpath(path), dest)


def build_pg_image(work: str) -> str:
    """A rootfs folder: busybox, PostgreSQL 15 and its libraries."""
    root = rb.build_image_dir(work)
    binaries = [f"{PG}/bin/postgres", f"{PG}/bin/initdb"]
    libs = set()
    for b in binaries + [os.path.join(f"{PG}/lib", f) for f in os.listdir(f"{PG}/lib")
                         if f.endswith(".so")]:
        libs |= libraries_of(b)
    for path in binaries + [f"{PG}/lib", PG_SHARE] + sorted(libs):
        copy_into(root, path)
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write(f"root:x:0:0:root:/root:/bin/sh\npostgres:x:{UID}:{UID}:pg:/var/lib/pg:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write(f"root:x:0:\npostgres:x:{UID}:\n")
    for d in ("tmp", "run/pg", "var/lib/pg"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    # The volume takes its owner from the image's folder at its first use
    # (both engines copy it up), so postgres owns its data folder.
    os.chown(os.path.join(root, "var/lib/pg"), UID, UID)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    return root


def import_pg(engine: rb.Engine, img: str) -> None:
    tar = subprocess.Popen(["tar", "-C", img, "-c", "."], stdout=subprocess.PIPE)
    try:
        engine.docker("import", "-", IMAGE, input_file=tar.stdout)
    finally:
        tar.stdout.close()
        tar.wait()


SERVER = (f"{PG}/bin/initdb -D /var/lib/pg/data -U postgres -A trust --no-locale -E UTF8 "
          f"> /tmp/initdb.log 2>&1 || {{ cat /tmp/initdb.log; exit 1; }}; "
          f"exec {PG}/bin/postgres -D /var/lib/pg/data -k /run/pg -c listen_addresses=")


def root_disk(path: str) -> str:
    """The whole disk under `path` (vda for /dev/vda1 or /dev/vda)."""
    st = os.stat(path)
    sysfs = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if os.path.exists(os.path.join(sysfs, "partition")):
        sysfs = os.path.dirname(sysfs)
    return os.path.basename(sysfs)


def disk_counters(disk: str) -> tuple[int, int, int]:
    """Writes completed, sectors written and flushes completed on `disk`."""
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if fields[2] == disk:
                v = [int(x) for x in fields[3:]]
                return v[4], v[6], (v[15] if len(v) > 15 else 0)
    raise RuntimeError(f"{disk} not in /proc/diskstats")


def cpu_busy() -> tuple[float, float]:
    """Seconds of CPU busy (all but idle and iowait) and idle+iowait so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    return (sum(v) - idle) / hz, idle / hz


def one_run(engine: rb.Engine, driver: str, work: str, seconds: int,
            scale: int) -> tuple[float, str]:
    vol = f"pgb{int(time.time() * 1000) % 10**9}"
    create = ["volume", "create", vol]
    if driver == "thin":
        create += ["--driver", "thin", "-o", "size=4G"]
    engine.docker(*create)
    sock = tempfile.mkdtemp(prefix="pgs-", dir=work)
    os.chmod(sock, 0o777)
    try:
        engine.docker("run", "-d", "--name", vol, "--network", "none", "-u", f"{UID}:{UID}",
                      "-v", f"{vol}:/var/lib/pg", "-v", f"{sock}:/run/pg", IMAGE,
                      "sh", "-c", SERVER)
        wait_ready(engine, vol, sock)
        pgbench = [f"{PG}/bin/pgbench", "-h", sock, "-U", "postgres"]
        subprocess.run(pgbench + ["-i", "-q", "-s", str(scale), "postgres"], check=True,
                       capture_output=True, timeout=600)
        disk = root_disk(work)
        before, cpu0 = disk_counters(disk), cpu_busy()
        out = subprocess.run(pgbench + ["-c", "4", "-j", "2", "-T", str(seconds), "postgres"],
                             check=True, capture_output=True, text=True, timeout=seconds + 120)
        after, cpu1 = disk_counters(disk), cpu_busy()
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
        t = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
        if not m or not t:
            raise RuntimeError(f"no tps in pgbench output:\n{out.stdout}")
        txns = max(int(t.group(1)), 1)
        writes, sectors, flushes = (a - b for a, b in zip(after, before))
        per_txn = (f"{disk} per transaction: {writes / txns:.2f} writes, "
                   f"{sectors * 512 / 1024 / txns:.1f} KiB, {flushes / txns:.2f} flushes; "
                   f"CPU {(cpu1[0] - cpu0[0]) / txns * 1e6:.0f} µs busy, "
                   f"{(cpu1[1] - cpu0[1]) / txns * 1e6:.0f} µs idle")
        return float(m.group(1)), per_txn
    finally:
        engine.docker("rm", "-f", vol, check=False)
        engine.docker("volume", "rm", vol, check=False)
        shutil.rmtree(sock, ignore_errors=True)


def wait_ready(engine: rb.Engine, name: str, sock: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(sock, ".s.PGSQL.5432")):
            ok = subprocess.run([f"{PG}/bin/pg_isready", "-h", sock], capture_output=True)
            if ok.returncode == 0:
                return
        state = engine.docker("inspect", "-f", "{{.State.Running}}", name, check=False)
        if state.stdout.strip() == "false":
            logs = engine.docker("logs", name, check=False)
            raise RuntimeError(f"postgres exited on {engine.name}: {logs.stdout}{logs.stderr}")
        time.sleep(0.2)
    raise RuntimeError(f"postgres not ready on {engine.name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--only", default="thin,local,dockerd")
    ap.add_argument("--out")
    rb.add_binary_args(ap)
    args = ap.parse_args()
    if not os.path.exists(f"{PG}/bin/pgbench"):
        print("needs postgresql-15 (apt-get install postgresql-15)", file=sys.stderr)
        return 2
    berth_bin = args.berth_bin or rb.default_berth_bin()
    work = tempfile.mkdtemp(prefix="pgb-", dir="/tmp")
    os.chmod(work, 0o755)
    engines: dict[str, rb.Engine] = {}
    tps: dict[str, list[float]] = {}
    targets = [t for t in ("thin", "local", "dockerd") if t in args.only.split(",")]
    try:
        bin_copy = os.path.join(work, "berth")
        shutil.copy2(berth_bin, bin_copy)
        engines["berth"] = rb.Berth(bin_copy, args.docker_bin, thin_pool_size="20G")
        if "dockerd" in targets:
            engines["dockerd"] = rb.Dockerd(args.dockerd_bin, args.docker_bin)
        img = build_pg_image(work)
        for e in engines.values():
            e.start(timeout=90)
            import_pg(e, img)
        for run in range(args.runs):
            for target in (targets if run % 2 == 0 else list(reversed(targets))):
                engine = engines["dockerd" if target == "dockerd" else "berth"]
                driver = "thin" if target == "thin" else "local"
                x, per_txn = one_run(engine, driver, work, args.seconds, args.scale)
                tps.setdefault(target, []).append(x)
                rb.log(f"run {run + 1} {target}: {x:.0f} TPS; {per_txn}")
    finally:
        rb.clean_up(engines.values(), work)
    rows = ["| target | TPS per run | median |", "|---|---|---:|"]
    labels = {"thin": "berth thin volume", "local": "berth local volume",
              "dockerd": "dockerd local volume"}
    for target, xs in tps.items():
        rows.append(f"| {labels[target]} | {', '.join(f'{x:.0f}' for x in xs)} | "
                    f"{statistics.median(xs):.0f} |")
    if "thin" in tps and "local" in tps:
        ratio = statistics.median(tps["thin"]) / statistics.median(tps["local"])
        rows.append(f"\nthin / local (berth): {ratio:.2f}×")
    rb.emit("\n".join(rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
