#!/usr/bin/env python3
"""Volume backups: berth against the restic CLI on the same data, and
against the tar recipe Docker's documentation gives, on dockerd, in one run.

    python3 bench/backup_bench.py [--gib 1] [--runs 3] [--out FILE]

It builds nothing (`cargo build --release` first; BERTH_BIN, DOCKER_BIN,
DOCKERD_BIN as for run_bench.py) and needs restic. The data: about --gib
GiB of mixed files (three quarters incompressible, 0.25-2 MiB each; a
quarter compressible text of 64-256 KiB), written once into a berth local
volume, copied into a host folder (for restic) and a dockerd volume (for
the tar recipe). For each of --runs rounds (each from empty repositories):

  * full: `berth volume backup` into a new local repository; `restic
    backup` of the folder into a new repository (same password, restic's
    defaults); dockerd: `docker run --rm -v VOL:/data -v DIR:/backup
    busybox tar cf /backup/data.tar /data` (docs.docker.com,
    "Back up, restore, or migrate data volumes");
  * incremental, after the same 1 % of the files is rewritten on all three
    sides: a second berth backup, a second restic backup, and for dockerd
    another full tar (the recipe has no incremental form);
  * restore of the latest: `berth volume restore` into a new volume;
    `restic restore latest --target`; dockerd: a new volume and `tar xf`.

Page caches are dropped before every timed step. Prints the medians and
the berth/peer ratios; both daemons are stopped by PID and every folder
removed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import run_bench as rb  # noqa: E402
from tree_helpers import write_mixed  # noqa: E402  (shared with the backup tests)

PASSWORD = "bench passphrase"
MIB = 1 << 20


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(argv: list[str], env: dict | None = None) -> float:
    drop_caches()
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {p.stdout}{p.stderr}")
    return took


def timed_engine(engine: rb.Engine, *args: str) -> float:
    drop_caches()
    t0 = time.monotonic()
    engine.docker(*args)
    return time.monotonic() - t0


def change_one_percent(roots: list[str], names: list[str], rng: random.Random) -> int:
    changed = 0
    for rel in rng.sample(names, max(1, len(names) // 100)):
        size = os.path.getsize(os.path.join(roots[0], rel))
        data = rng.randbytes(size)
        for root in roots:
            with open(os.path.join(root, rel), "wb") as f:
                f.write(data)
        changed += size
    return changed


def one_round(n: int, berth: rb.Berth, dockerd: rb.Dockerd, work: str, folder: str,
              names: list[str], rng: random.Random, times: dict) -> None:
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, BERTH_REPO_PASSWORD=PASSWORD)
    cli = [berth.bin, "-H", berth.host]
    berth_repo, restic_repo = os.path.join(work, f"br{n}"), os.path.join(work, f"rr{n}")
    tar_dir = os.path.join(work, f"tar{n}")
    os.makedirs(tar_dir)
    subprocess.run(cli + ["backup", "repo", "init", f"r{n}", "--url", berth_repo], env=env, check=True,
                   capture_output=True)
    subprocess.run(["restic", "-r", restic_repo, "init"], env=env, check=True, capture_output=True)
    tar_cmd = ["run", "--rm", "-v", "data:/data", "-v", f"{tar_dir}:/backup", rb.IMAGE,
               "tar", "cf", "/backup/data.tar", "/data"]
    times.setdefault("full", []).append((
        timed(cli + ["volume", "backup", "data", "--repo", f"r{n}"], env),
        timed(["restic", "-r", restic_repo, "backup", folder], env),
        timed_engine(dockerd, *tar_cmd)))
    changed = change_one_percent([berth.mountpoint, folder, dockerd.mountpoint], names, rng)
    rb.log(f"round {n + 1}: changed {changed / MIB:.1f} MiB in {len(names) // 100} files")
    times.setdefault("incremental", []).append((
        timed(cli + ["volume", "backup", "data", "--repo", f"r{n}"], env),
        timed(["restic", "-r", restic_repo, "backup", folder], env),
        timed_engine(dockerd, *tar_cmd)))
    out = os.path.join(work, f"restic-out{n}")
    dockerd.docker("volume", "create", f"back{n}")
    times.setdefault("restore", []).append((
        timed(cli + ["volume", "restore", "--from", f"r{n}:latest", f"back{n}"], env),
        timed(["restic", "-r", restic_repo, "restore", "latest", "--target", out], env),
        timed_engine(dockerd, "run", "--rm", "-v", f"back{n}:/data", "-v", f"{tar_dir}:/backup",
                     rb.IMAGE, "tar", "xf", "/backup/data.tar", "-C", "/")))
    sizes = (rb_du(berth_repo), rb_du(restic_repo), rb_du(tar_dir))
    times.setdefault("stored", []).append(sizes)
    subprocess.run(cli + ["volume", "rm", f"back{n}"], check=True, capture_output=True)
    dockerd.docker("volume", "rm", f"back{n}")
    for path in (out, tar_dir, berth_repo, restic_repo):
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(cli + ["backup", "repo", "rm", f"r{n}"], check=True, capture_output=True)


def rb_du(path: str) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_blocks * 512
               for d, _, fs in os.walk(path) for f in fs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    rb.add_binary_args(ap)
    args = ap.parse_args()
    if shutil.which("restic") is None:
        print("needs restic (apt-get install restic)", file=sys.stderr)
        return 2
    berth_bin = args.berth_bin or rb.default_berth_bin()
    work = tempfile.mkdtemp(prefix="bkb-", dir="/tmp")
    berth = rb.Berth(berth_bin, args.docker_bin)
    dockerd = rb.Dockerd(args.dockerd_bin, args.docker_bin)
    times: dict[str, list[tuple[float, float, float]]] = {}
    try:
        img = rb.build_image_dir(work)
        for e in (berth, dockerd):
            e.start(timeout=90)
            rb.import_image(e, img)
            e.docker("volume", "create", "data")
        berth.mountpoint = os.path.join(berth.root, "volumes", "data", "_data")
        dockerd.mountpoint = os.path.join(dockerd.root, "volumes", "data", "_data")
        folder = os.path.join(work, "data")
        rng = random.Random(4242)
        names = write_mixed(berth.mountpoint, args.gib, rng)
        shutil.copytree(berth.mountpoint, folder, dirs_exist_ok=True)
        shutil.copytree(berth.mountpoint, dockerd.mountpoint, dirs_exist_ok=True)
        rb.log(f"data: {len(names)} files, {rb_du(folder) / MIB:.0f} MiB on disk")
        for n in range(args.runs):
            one_round(n, berth, dockerd, work, folder, names, rng, times)
            rb.log(f"round {n + 1}: " + ", ".join(
                f"{k} {v[-1][0]:.2f}/{v[-1][1]:.2f}/{v[-1][2]:.2f}" for k, v in times.items()))
    finally:
        rb.clean_up([berth, dockerd], work)
    rows = ["| step | berth | restic CLI | dockerd tar recipe | berth / restic | berth / tar |",
            "|---|---:|---:|---:|---:|---:|"]
    for step in ("full", "incremental", "restore"):
        b, r, t = (statistics.median(x[i] for x in times[step]) for i in range(3))
        rows.append(f"| {step} (s, median of {args.runs}) | {b:.2f} | {r:.2f} | {t:.2f} | "
                    f"{b / r:.2f}× | {b / t:.2f}× |")
    b, r, t = (statistics.median(x[i] for x in times["stored"]) for i in range(3))
    rows.append(f"| stored after both backups (MiB) | {b / MIB:.0f} | {r / MIB:.0f} | {t / MIB:.0f} "
                f"(one tar) | {b / r:.2f}× | {b / t:.2f}× |")
    rb.emit("\n".join(rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
