#!/usr/bin/env python3
"""Networks: berth against a private dockerd with bridge networking, in one run.

    python3 bench/network_bench.py [--runs 20] [--mib 512] [--out FILE]

It builds nothing (`cargo build --release` first; BERTH_BIN, DOCKER_BIN,
DOCKERD_BIN as for run_bench.py). In one run it starts a fresh berth
(default bridge `--bridge bnbench0 --bip 10.216.1.1/24`) and a fresh
private dockerd with its bridge and iptables on (`--bridge` default
docker0, `--bip 10.216.2.1/24`), imports the busybox image into both, and
times:

  1. `docker run --rm benchimg:1 true` on the default bridge network
     (3 warm-up runs per engine, then --runs timed, engines alternating;
     median, p90, min), and, for the floor, the same with --network none;
  2. TCP throughput container → container over a user bridge network:
     busybox `httpd` in one container serves a 32 MiB file from its
     /dev/shm, busybox `wget -O /dev/null` in another fetches it
     --mib/32 times in one shell loop (busybox `time`, 10 ms resolution;
     median of --tcp-reps), and the same two programs on the host over
     127.0.0.1 for reference. (busybox `nc` sends only its first buffer
     from a pipe, so it cannot be the load.)

Both daemons are stopped by PID and their folders cleaned as run_bench.py
does. dockerd leaves its bridge and iptables chains behind when it stops:
the bridge is deleted, and the filter and nat tables are put back as
`iptables-save` found them before the run (berth takes its own down at
its clean stop). Run it on a machine where nothing else changes iptables
meanwhile. Stdlib only.
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

BERTH_BRIDGE, BERTH_BIP = "bnbench0", "10.216.1.1/24"
DOCKER_BRIDGE_BIP = "10.216.2.1/24"
PORT = 5001


class BridgedDockerd(rb.Dockerd):
    """The private dockerd with its default bridge, NAT and iptables on."""

    def argv(self):
        return [self.bin, "--data-root", self.root, "--exec-root", self.exec_root,
                "--host", self.host, "--pidfile", self.pidfile, "--bip", DOCKER_BRIDGE_BIP]


class BridgedBerth(rb.Berth):
    def argv(self):
        return super().argv() + ["--bridge", BERTH_BRIDGE, "--bip", BERTH_BIP]


SERVE = ("dd if=/dev/zero of=/dev/shm/blob bs=1M count=32 2>/dev/null && "
         f"exec httpd -f -p {PORT} -h /dev/shm")


def fetch_loop(host: str, mib: int) -> str:
    return (f"time sh -c 'i=0; while [ $i -lt {mib // 32} ]; do "
            f"wget -q -O /dev/null http://{host}:{PORT}/blob || exit 1; i=$((i+1)); done'")


def busybox_seconds(stderr: str) -> float:
    """busybox `time`: `real\t0m 1.23s`."""
    m = re.search(r"real\s+(\d+)m\s*([\d.]+)s", stderr)
    if not m:
        raise RuntimeError(f"no time in: {stderr!r}")
    return int(m.group(1)) * 60 + float(m.group(2))


def throughput_once(e: rb.Engine, net: str, mib: int) -> float:
    """Seconds to fetch ``mib`` MiB from a server container on ``net``."""
    server = f"nbsrv{os.getpid()}"
    e.docker("run", "-d", "--name", server, "--network", net, rb.IMAGE, "sh", "-c", SERVE)
    try:
        time.sleep(0.5)  # the file is written and httpd listens
        p = e.docker("run", "--rm", "--network", net, rb.IMAGE, "sh", "-c", fetch_loop(server, mib))
        return busybox_seconds(p.stderr)
    finally:
        e.docker("rm", "-f", server, check=False)


def host_loopback_once(mib: int) -> float:
    shm = tempfile.mkdtemp(prefix="nbshm-", dir="/dev/shm")
    subprocess.run(["dd", "if=/dev/zero", f"of={shm}/blob", "bs=1M", "count=32"],
                   check=True, capture_output=True)
    server = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{PORT}", "-h", shm])
    try:
        time.sleep(0.3)
        p = subprocess.run(["busybox", "sh", "-c", fetch_loop("127.0.0.1", mib)],
                           capture_output=True, text=True, check=True)
        return busybox_seconds(p.stderr)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(shm, ignore_errors=True)


def bench_throughput(engines: list[rb.Engine], mib: int, reps: int) -> str:
    """The throughput table (MB/s; 1 MB = 10^6 bytes)."""
    samples: dict[str, list[float]] = {}
    for e in engines:
        e.docker("network", "create", "--subnet",
                 "10.216.3.0/24" if e.name == "berth" else "10.216.4.0/24", "nbench")
        try:
            throughput_once(e, "nbench", mib)  # warm-up
            samples[e.name] = [throughput_once(e, "nbench", mib) for _ in range(reps)]
        finally:
            e.docker("network", "rm", "nbench", check=False)
    host = [host_loopback_once(mib) for _ in range(reps)]
    mbps = {name: mib * 1.048576 / statistics.median(xs) for name, xs in samples.items()}
    host_mbps = mib * 1.048576 / statistics.median(host)
    for name, xs in samples.items():
        rb.log(f"throughput [{name}] s: " + " ".join(f"{x:.2f}" for x in xs))
    rb.log("throughput [host loopback] s: " + " ".join(f"{x:.2f}" for x in host))
    cell = lambda name: f"{mbps[name]:.0f} MB/s" if name in mbps else "n/a"  # noqa: E731
    return "\n".join([
        "| TCP, busybox `wget` of busybox `httpd`, {mib} MiB, median of {reps} | berth | dockerd | host loopback | berth/loopback |".format(mib=mib, reps=reps),
        "|---|---:|---:|---:|---:|",
        f"| container → container over a user bridge network | {cell('berth')} | {cell('dockerd')} "
        f"| {host_mbps:.0f} MB/s | {mbps.get('berth', 0) / host_mbps:.2f}× |",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--tcp-reps", type=int, default=3)
    ap.add_argument("--out")
    rb.add_binary_args(ap)
    args = ap.parse_args()
    berth_bin = args.berth_bin or rb.default_berth_bin()
    saved_rules = subprocess.run(["iptables-save"], capture_output=True, text=True,
                                 check=True).stdout
    work = tempfile.mkdtemp(prefix="nb-", dir="/tmp")
    engines: list[rb.Engine] = []
    res = rb.Results()
    tcp = ""
    try:
        bin_copy = os.path.join(work, "berth")
        shutil.copy2(berth_bin, bin_copy)
        engines.append(BridgedBerth(bin_copy, args.docker_bin))
        if args.dockerd_bin:
            engines.append(BridgedDockerd(args.dockerd_bin, args.docker_bin))
        for e in engines:
            e.start(timeout=90)
        img = rb.build_image_dir(work)
        for e in engines:
            rb.import_image(e, img)
        rb.bench_run(res, engines, "`docker run --rm benchimg:1 true` (default bridge network)",
                     ["run", "--rm", rb.IMAGE, "true"], args.runs)
        rb.bench_run(res, engines, "`docker run --rm --network none benchimg:1 true` (floor)",
                     ["run", "--rm", "--network", "none", rb.IMAGE, "true"], args.runs,
                     stats=("median",))
        tcp = bench_throughput(engines, args.mib, args.tcp_reps)
    finally:
        for e in reversed(engines):
            try:
                rb.stop_proc(e.proc, timeout=30)
            finally:
                e.stop_and_clean()
        subprocess.run(["ip", "link", "del", "docker0"], capture_output=True)
        subprocess.run(["iptables-restore"], input=saved_rules, text=True, check=False)
        rb.kill_leftovers(work)
        rb.remove_tree(work)
    text = res.table() + "\n\n" + tcp + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
