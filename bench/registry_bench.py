#!/usr/bin/env python3
"""Registries: `docker pull` and `docker push` through berth and a private
dockerd, against one local registry, in one run.

    python3 bench/registry_bench.py [--reps 3] [--layer-mib 32] [--out FILE]

It builds nothing (`cargo build --release` first; BERTH_BIN, DOCKER_BIN,
DOCKERD_BIN as for run_bench.py) and needs Debian's `docker-registry`. In
one run it starts a fresh berth, a fresh private dockerd and a
`docker-registry` on a free loopback port (plain HTTP, which both daemons
allow on 127.0.0.0/8), imports the busybox image into both, and has
dockerd build the test image on it (legacy builder, no network): four
layers of --layer-mib MiB each, two of random bytes (gzip cannot shrink
them) and two of text (it can), pushed to the registry as `bench/src:1`.
Then, engines alternating, --reps times each:

  1. pull: `docker pull REG/bench/src:1` with only the base layer present
     (the image is removed after each pull, its layers with it);
  2. push to an empty registry: the registry is restarted on fresh
     storage, then `docker push REG/bench/src:1` (every layer uploaded:
     dockerd compresses each layer again, berth sends the blob it kept at
     pull);
  3. push again: the same push once the registry has every blob ("Layer
     already exists" for all).

Times are wall-clock of the docker CLI command (median and min, ms). Both
daemons and the registry are stopped by PID and their folders removed.
Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402

REPO = "bench/src:1"


class LocalRegistry:
    """`docker-registry serve` on 127.0.0.1, its storage in ``work``."""

    def __init__(self, work: str):
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.generation = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_empty(self) -> None:
        """(Re)starts the registry on fresh, empty storage."""
        self.stop()
        self.generation += 1
        storage = os.path.join(self.work, f"registry-{self.generation}")
        config = os.path.join(self.work, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog: {{level: error}}\n"
                    f"storage: {{filesystem: {{rootdirectory: {storage}}}}}\n"
                    f"http: {{addr: {self.host}}}\n")
        log = open(os.path.join(self.work, "registry.log"), "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log,
                                     stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        if self.proc:
            rb.stop_proc(self.proc, timeout=15)
            self.proc = None
        for name in os.listdir(self.work):
            if name.startswith("registry-"):
                shutil.rmtree(os.path.join(self.work, name), ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_layers(context: str, mib: int) -> None:
    """Two random and two text files of ``mib`` MiB, and their Dockerfile."""
    rng = random.Random(1)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9)))
             for _ in range(500)]
    for i in range(4):
        with open(os.path.join(context, f"f{i}"), "wb") as f:
            if i % 2 == 0:
                f.write(os.urandom(mib << 20))
            else:
                text = " ".join(rng.choice(words) for _ in range(mib << 18)).encode()
                f.write(text[: mib << 20])
    with open(os.path.join(context, "Dockerfile"), "w") as f:
        f.write(f"FROM {rb.IMAGE}\n" + "".join(f"COPY f{i} /f{i}\n" for i in range(4)))


def populate(dockerd: rb.Engine, reg: LocalRegistry, work: str, mib: int) -> None:
    """dockerd builds the test image and pushes it; then forgets it."""
    context = os.path.join(work, "context")
    os.makedirs(context)
    write_layers(context, mib)
    ref = f"{reg.host}/{REPO}"
    env_argv = ["env", "DOCKER_BUILDKIT=0"]
    subprocess.run([*env_argv, dockerd.docker_bin, "-H", dockerd.host, "build", "-q", "-t", ref,
                    context], check=True, capture_output=True, env=rb.docker_env(dockerd.config))
    dockerd.docker("push", ref)
    dockerd.docker("rmi", ref)
    shutil.rmtree(context)


def timed(e: rb.Engine, *args: str, expect: tuple[str, int] | None = None) -> float:
    """Milliseconds of one CLI command; ``expect`` = (line, count) it must
    print (the work really done: layers pulled or pushed, not skipped)."""
    t0 = time.perf_counter()
    p = e.docker(*args)
    elapsed = (time.perf_counter() - t0) * 1000.0
    if expect and p.stdout.count(expect[0]) != expect[1]:
        raise RuntimeError(f"{e.name}: `{' '.join(args)}` did not print {expect[0]!r} "
                           f"{expect[1]} times:\n{p.stdout}")
    return elapsed


def bench(engines: list[rb.Engine], reg: LocalRegistry, reps: int) -> dict:
    ref = f"{reg.host}/{REPO}"
    samples: dict[str, dict[str, list[float]]] = {
        k: {e.name: [] for e in engines} for k in ("pull", "push", "repush")}
    for _ in range(reps):
        for e in engines:
            samples["pull"][e.name].append(timed(e, "pull", ref, expect=("Pull complete", 4)))
            e.docker("rmi", ref)
    for e in engines:
        e.docker("pull", ref)
    for _ in range(reps):
        for e in engines:
            reg.start_empty()
            samples["push"][e.name].append(timed(e, "push", ref, expect=(": Pushed", 5)))
            samples["repush"][e.name].append(
                timed(e, "push", ref, expect=(": Layer already exists", 5)))
    return samples


def table(samples: dict, mib: int, reps: int) -> str:
    labels = {
        "pull": f"`docker pull` of 4 new layers × {mib} MiB (2 random, 2 text)",
        "push": "`docker push` to an empty registry (every layer uploaded)",
        "repush": "`docker push` again (every layer already there)",
    }
    rows = [f"| operation, median (min) of {reps} | berth | dockerd | berth/dockerd |",
            "|---|---:|---:|---:|"]
    for key, label in labels.items():
        cells = {}
        for name, xs in samples[key].items():
            rb.log(f"{key} [{name}] ms: " + " ".join(f"{x:.0f}" for x in xs))
            cells[name] = (statistics.median(xs), min(xs)) if xs else None
        b, d = cells.get("berth"), cells.get("dockerd")
        fmt = lambda c: f"{c[0]:.0f} ms ({c[1]:.0f})" if c else "n/a"  # noqa: E731
        ratio = f"{b[0] / d[0]:.2f}×" if b and d else "n/a"
        rows.append(f"| {label} | {fmt(b)} | {fmt(d)} | {ratio} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--layer-mib", type=int, default=32)
    ap.add_argument("--out")
    rb.add_binary_args(ap)
    args = ap.parse_args()
    if not shutil.which("docker-registry") or not args.dockerd_bin:
        print("needs docker-registry and dockerd (scripts/setup --test installs them)",
              file=sys.stderr)
        return 2
    berth_bin = args.berth_bin or rb.default_berth_bin()
    work = tempfile.mkdtemp(prefix="rgb-", dir="/tmp")
    reg = LocalRegistry(work)
    engines: list[rb.Engine] = []
    try:
        bin_copy = os.path.join(work, "berth")
        shutil.copy2(berth_bin, bin_copy)
        engines = [rb.Berth(bin_copy, args.docker_bin), rb.Dockerd(args.dockerd_bin, args.docker_bin)]
        for e in engines:
            e.start(timeout=90)
        img = rb.build_image_dir(work)
        for e in engines:
            rb.import_image(e, img)
        reg.start_empty()
        populate(engines[1], reg, work, args.layer_mib)
        text = table(bench(engines, reg, args.reps), args.layer_mib, args.reps)
    finally:
        reg.stop()
        rb.clean_up(engines, work)
    rb.emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
