#!/usr/bin/env python3
"""`berth volume migrate` between two berth daemons over a veth link, in one run.

    sudo python3 bench/migrate_bench.py [--runs 3] [--gib 1] [--thin-mib 800] \\
        [--rate 1gbit] [--out FILE]

It builds nothing (`cargo build --release` first; BERTH_BIN and DOCKER_BIN
as for run_bench.py; no dockerd). It needs root, iproute2 (`ip`, `tc`,
`ss`), zstd, GNU tar, OpenBSD netcat (Debian's netcat-openbsd: busybox `nc`
sends only its first buffer from a pipe), xfsprogs and busybox-static; it
says which are missing and stops.

Set-up: two network namespaces joined by a veth pair (10.232.N.1 and
10.232.N.2/30; with --rate the source side is shaped by `tc tbf`), a fresh
`berth daemon` in each (its own folder under /tmp, --thin-pool-size 6G),
the target serving mutual TLS on tcp://10.232.N.2:2376 with certificates
from `berth tls init`; the busybox image on the source. Then:

  1. a local volume holding --gib GiB of mixed files (tree_helpers.
     write_mixed: three quarters incompressible files of 0.25-2 MiB, a
     quarter compressible text of 64-256 KiB), written on the host into
     its Mountpoint. Timed, --runs times each, alternating, page cache
     dropped before each:
       berth: `berth volume migrate data --to tcp://… --name copy` run in
         the source's namespace (export → zstd -1 → mutual TLS → import,
         SHA-256 checked by the target); `copy` removed after, untimed;
       pipe: `nc -l PORT | zstd -d | tar -xpf - -C DIR` in the target's
         namespace, `tar -cf - . | zstd -1 | nc -N ADDR PORT` in the
         source's (plain TCP, no digest); timed from the sender's start to
         the receiver's exit; DIR removed after, untimed.
     The first copy of each is checked against the source tree (every
     path, mode, owner, xattr and content digest). The time of a `sync`
     right after each copy is noted beside it (berth's import syncs, the
     tar pipe does not). MB/s = bytes of file data / seconds (1 MB =
     10^6 bytes);
  2. a thin volume (size --thin-size, default 1G) holding --thin-mib MiB
     (three quarters /dev/urandom, a quarter repeated text, and 1 % of
     it in /churn), written in a container. Per run:
       full: `berth volume migrate tv --name tv-copy` to a target without
         that volume (every block of the image is sent; `tv-copy` is
         removed after, untimed);
       live: a container starts rewriting /churn (4 MiB at a rotating
         offset, then sync, 10 times a second): 1 % of the data changes
         while pass 1 runs; `berth volume migrate tv --live --name
         tv-live`: the wall time, the CLI's `migrate: unavailable for T s`
         (from the stop of the writer to the target's answer for the final
         pass) and both passes' bytes;
       incremental: 1 % rewritten in a container, then `berth volume
         migrate tv --name tv-live` again (only the changed blocks);
       `tv-live` removed after, untimed.

Prints a markdown table per part (medians, with every sample) and the
machine; --out also writes them to FILE. Both daemons are stopped by PID,
their folders unmounted and removed, the namespaces deleted. Stdlib only
(tree_helpers.py of the end-to-end tests is stdlib only too).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import run_bench as rb  # noqa: E402
from tree_helpers import MIB, tree_digest, write_mixed  # noqa: E402

PORT = 2376
PIPE_PORT = 5002
PASS_LINE = re.compile(
    r"^migrate: pass (\d+) sent (\d+) bytes of blocks \(snapshot (\S+), since (\S+)\)", re.M)
UNAVAILABLE_LINE = re.compile(r"^migrate: unavailable for (\d+(?:\.\d+)?) s", re.M)

# Rewrites 4 MiB of the 8 MiB /d/churn at a rotating offset, ten times a
# second; TERM ends it between two commands (a quick stop).
CHURN = ('trap "exit 0" TERM; i=0; while true; do '
         'dd if=/dev/urandom of=/d/churn bs=1M count=4 seek=$(( (i % 2) * 4 )) conv=notrunc '
         '2>/dev/null; sync; i=$((i+1)); sleep 0.1; done')


def missing_tools() -> list[str]:
    """What this bench needs and this machine lacks (as `command -v` finds it)."""
    missing = []
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("ss", "iproute2"),
                          ("zstd", "zstd"), ("tar", "tar"), ("nc", "netcat-openbsd"),
                          ("mkfs.xfs", "xfsprogs")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    nc = shutil.which("nc")
    if nc is not None:
        p = subprocess.run([nc, "-h"], capture_output=True, text=True)
        if "OpenBSD" not in p.stdout + p.stderr:
            missing.append(f"{nc} is not OpenBSD netcat (apt-get install netcat-openbsd)")
    if not os.path.exists(rb.BUSYBOX):
        missing.append(f"{rb.BUSYBOX} (apt-get install busybox-static)")
    return missing


def run(argv: list[str], timeout: float = 3600, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed with exit {p.returncode}\n"
                           f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed_sync() -> float:
    t0 = time.monotonic()
    subprocess.run(["sync"], check=True)
    return time.monotonic() - t0


class NetnsBerth(rb.Berth):
    """A berth daemon whose process lives in network namespace `ns`
    (`ip netns exec` hides the cgroup tree under its own /sys: it is
    mounted again there, so the daemon can run containers)."""

    def __init__(self, bin_path: str, docker_bin: str, ns: str, extra: list[str]):
        super().__init__(bin_path, docker_bin, thin_pool_size="6G")
        self.ns = ns
        self.extra = extra

    def argv(self):
        remount = 'mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup; exec "$@"'
        return ["ip", "netns", "exec", self.ns, "sh", "-c", remount, "sh", *super().argv(),
                "--config-file", "/dev/null", *self.extra]

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return run([self.bin, "-H", self.host, *args], timeout=timeout)

    def mountpoint(self, volume: str) -> str:
        return os.path.join(self.root, "volumes", volume, "_data")


class Link:
    """Two namespaces joined by a veth pair; a berth daemon in each; the
    target serves mutual TLS on its address."""

    def __init__(self, work: str):
        tag = os.urandom(3).hex()
        self.ns_a, self.ns_b = f"mb{tag}a", f"mb{tag}b"
        n = int(tag[:2], 16) % 250 + 1
        self.addr_a, self.addr_b = f"10.232.{n}.1", f"10.232.{n}.2"
        self.certs = os.path.join(work, "certs")
        self.engines: list[NetnsBerth] = []
        self.made_ns: list[str] = []

    def up(self, berth_bin: str, docker_bin: str, rate: str | None, burst: str) -> None:
        for ns in (self.ns_a, self.ns_b):
            run(["ip", "netns", "add", ns])
            self.made_ns.append(ns)
        run(["ip", "link", "add", self.ns_a, "netns", self.ns_a, "type", "veth",
             "peer", "name", self.ns_b, "netns", self.ns_b])
        for ns, addr in ((self.ns_a, self.addr_a), (self.ns_b, self.addr_b)):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", ns])
            run(["ip", "-n", ns, "link", "set", ns, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        if rate:
            run(["ip", "netns", "exec", self.ns_a, "tc", "qdisc", "add", "dev", self.ns_a, "root",
                 "tbf", "rate", rate, "burst", burst, "latency", "50ms"])
        run([berth_bin, "tls", "init", self.certs, "--name", self.addr_b])
        self.source = NetnsBerth(berth_bin, docker_bin, self.ns_a, [])
        self.target = NetnsBerth(berth_bin, docker_bin, self.ns_b, [
            "--host", f"tcp://{self.addr_b}:{PORT}", "--tlsverify",
            "--tlscacert", f"{self.certs}/ca.pem", "--tlscert", f"{self.certs}/server-cert.pem",
            "--tlskey", f"{self.certs}/server-key.pem"])
        for e in (self.source, self.target):
            self.engines.append(e)
            e.start(timeout=90)

    def in_a(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns_a, *argv]

    def in_b(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns_b, *argv]

    def migrate(self, volume: str, *flags: str) -> tuple[float, str]:
        """Seconds and stderr of one `berth volume migrate` in the source's
        namespace."""
        argv = self.in_a([self.source.bin, "-H", self.source.host, "volume", "migrate", volume,
                          "--to", f"tcp://{self.addr_b}:{PORT}",
                          "--tlscacert", f"{self.certs}/ca.pem",
                          "--tlscert", f"{self.certs}/cert.pem",
                          "--tlskey", f"{self.certs}/key.pem", *flags])
        t0 = time.monotonic()
        p = run(argv)
        return time.monotonic() - t0, p.stderr

    def down(self) -> None:
        for ns in self.made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def passes(stderr: str) -> list[tuple[int, int, str, str]]:
    return [(int(m[1]), int(m[2]), m[3], m[4]) for m in PASS_LINE.finditer(stderr)]


def unavailable(stderr: str) -> float | None:
    m = UNAVAILABLE_LINE.search(stderr)
    return float(m[1]) if m else None


# ---------------------------------------------------------------------------
# 1. a local volume: berth against tar | zstd -1 | nc
# ---------------------------------------------------------------------------


def wait_listening(link: Link, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(link.in_b(["ss", "-Hltn", f"sport = :{port}"]),
                             capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} in {link.ns_b}")


def pipe_once(link: Link, src: str, dst: str) -> float:
    os.makedirs(dst)
    receiver = subprocess.Popen(
        link.in_b(["bash", "-o", "pipefail", "-c",
                   f"nc -l {PIPE_PORT} | zstd -d -q -c | tar -C {dst} -xpf -"]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(link, PIPE_PORT)
        drop_caches()
        t0 = time.monotonic()
        sender = subprocess.run(
            link.in_a(["bash", "-o", "pipefail", "-c", f"tar -C {src} -cf - . | "
                       f"zstd -1 -q -c | nc -N {link.addr_b} {PIPE_PORT}"]),
            capture_output=True, text=True, timeout=3600)
        out, err = receiver.communicate(timeout=3600)
        took = time.monotonic() - t0
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    if sender.returncode != 0 or receiver.returncode != 0:
        raise RuntimeError(f"tar | zstd | nc: sender {sender.returncode} ({sender.stderr.strip()}), "
                           f"receiver {receiver.returncode} ({err.strip()})")
    return took


def berth_local_once(link: Link) -> float:
    drop_caches()
    took, stderr = link.migrate("data", "--name", "copy")
    rb.log(f"berth: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")
    return took


def bench_local(link: Link, work: str, gib: float, runs: int) -> str:
    src = link.source
    src.cli("volume", "create", "data")
    mountpoint = src.mountpoint("data")
    names = write_mixed(mountpoint, gib, random.Random(4343))
    total = sum(os.path.getsize(os.path.join(mountpoint, n)) for n in names)
    want = tree_digest(mountpoint)
    rb.log(f"local volume: {len(names)} files, {total / MIB:.0f} MiB")
    times: dict[str, list[float]] = {"berth": [], "pipe": []}
    syncs: dict[str, list[float]] = {"berth": [], "pipe": []}
    for i in range(runs):
        for who in (("berth", "pipe") if i % 2 == 0 else ("pipe", "berth")):
            if who == "berth":
                times[who].append(berth_local_once(link))
                syncs[who].append(timed_sync())
                if i == 0 and tree_digest(link.target.mountpoint("copy")) != want:
                    raise RuntimeError("the migrated volume differs from the source")
                link.target.cli("volume", "rm", "copy")
            else:
                dst = os.path.join(work, "pipe-dst")
                times[who].append(pipe_once(link, mountpoint, dst))
                syncs[who].append(timed_sync())
                if i == 0 and tree_digest(dst) != want:
                    raise RuntimeError("the tar pipe's copy differs from the source")
                shutil.rmtree(dst)
            rb.log(f"run {i + 1} {who}: {times[who][-1]:.2f} s (+ sync {syncs[who][-1]:.2f} s)")
    b, p = statistics.median(times["berth"]), statistics.median(times["pipe"])
    mbs = lambda s: total / s / 1e6  # noqa: E731
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    rows = [f"| local volume, {total / MIB:.0f} MiB in {len(names)} files, median of {runs} "
            "| `berth volume migrate` | `tar \\| zstd -1 \\| nc` → `nc -l \\| zstd -d \\| tar x` "
            "| berth / pipe |",
            "|---|---:|---:|---:|",
            f"| time (s; samples {fmt(times['berth'])} / {fmt(times['pipe'])}) | {b:.2f} | {p:.2f} "
            f"| {b / p:.2f}× |",
            f"| throughput (MB/s of file data) | {mbs(b):.0f} | {mbs(p):.0f} | {p / b:.2f}× |",
            f"| `sync` right after (s, median; not in the time) "
            f"| {statistics.median(syncs['berth']):.2f} | {statistics.median(syncs['pipe']):.2f} | |"]
    src.cli("volume", "rm", "data")
    return "\n".join(rows)


# ---------------------------------------------------------------------------
# 2. a thin volume: full block migration, --live, incremental
# ---------------------------------------------------------------------------


def in_container(link: Link, volume: str, script: str) -> None:
    link.source.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/d", rb.IMAGE,
                       "sh", "-c", script)


def change_one_percent(link: Link, churn_mib: int) -> None:
    in_container(link, "tv", f"dd if=/dev/urandom of=/d/churn bs=1M count={churn_mib} "
                             "conv=notrunc 2>/dev/null && sync")


def bench_thin(link: Link, runs: int, mib: int, size: str) -> str:
    churn = max(8, mib // 100)
    random_mib = mib * 3 // 4 - churn
    text_bytes = (mib - random_mib - churn) * MIB
    link.source.docker("volume", "create", "-d", "thin", "-o", f"size={size}", "tv")
    in_container(link, "tv",
                 f"dd if=/dev/urandom of=/d/random bs=1M count={random_mib} 2>/dev/null && "
                 f"yes 'the quick brown fox jumps over the lazy dog' | head -c {text_bytes} "
                 f"> /d/text && dd if=/dev/urandom of=/d/churn bs=1M count={churn} 2>/dev/null && sync")
    rb.log(f"thin volume tv ({size}): {mib} MiB written, {churn} MiB of it in /churn")
    full, full_sent = [], []
    live, down, pass1, pass2 = [], [], [], []
    incr, incr_sent = [], []
    for i in range(runs):
        drop_caches()
        took, stderr = link.migrate("tv", "--name", "tv-copy")
        got = passes(stderr)
        if len(got) != 1 or got[0][3] != "none":
            raise RuntimeError(f"a full migration should make one pass since none: {stderr}")
        full.append(took)
        full_sent.append(got[0][1])
        link.target.cli("volume", "rm", "tv-copy")
        rb.log(f"run {i + 1} full: {took:.2f} s, {got[0][1] / MIB:.0f} MiB of blocks")

        writer = f"churn{i}"
        link.source.docker("run", "-d", "--network", "none", "--name", writer, "-v", "tv:/d",
                           rb.IMAGE, "sh", "-c", CHURN)
        try:
            time.sleep(1.0)
            drop_caches()
            took, stderr = link.migrate("tv", "--live", "--name", "tv-live")
        finally:
            link.source.docker("rm", "-f", writer, check=False)
        got = passes(stderr)
        t = unavailable(stderr)
        if len(got) != 2 or t is None:
            raise RuntimeError(f"--live should make two passes and say how long: {stderr}")
        live.append(took)
        down.append(t)
        pass1.append(got[0][1])
        pass2.append(got[1][1])
        rb.log(f"run {i + 1} live: {took:.2f} s, unavailable {t:.3f} s, pass 1 "
               f"{got[0][1] / MIB:.1f} MiB, pass 2 {got[1][1] / MIB:.1f} MiB")

        change_one_percent(link, churn)
        drop_caches()
        took, stderr = link.migrate("tv", "--name", "tv-live")
        got = passes(stderr)
        if len(got) != 1 or got[0][3] == "none":
            raise RuntimeError(f"the second migration should be incremental: {stderr}")
        incr.append(took)
        incr_sent.append(got[0][1])
        rb.log(f"run {i + 1} incremental: {took:.2f} s, {got[0][1] / MIB:.1f} MiB")
        link.target.cli("volume", "rm", "tv-live")

    med = statistics.median
    fmt = lambda xs, f="{:.2f}": ", ".join(f.format(x) for x in xs)  # noqa: E731
    mibs = lambda xs: [x / MIB for x in xs]  # noqa: E731
    rows = [f"| thin volume, size {size}, {mib} MiB of data, median of {runs} | value | samples |",
            "|---|---:|---|",
            f"| full block migration (s) | {med(full):.2f} | {fmt(full)} |",
            f"| full: blocks sent (MiB) / MB/s | {med(full_sent) / MIB:.0f} / "
            f"{med(full_sent) / med(full) / 1e6:.0f} | {fmt(mibs(full_sent), '{:.0f}')} |",
            f"| `--live`, {churn} MiB (1 %) rewritten during pass 1: wall time (s) | {med(live):.2f} "
            f"| {fmt(live)} |",
            f"| `--live`: unavailable (s, stop of the writer → target's answer) | {med(down):.3f} "
            f"| {fmt(down, '{:.3f}')} |",
            f"| `--live`: pass 1 / pass 2 sent (MiB) | {med(pass1) / MIB:.0f} / {med(pass2) / MIB:.1f} "
            f"| {fmt(mibs(pass1), '{:.0f}')} / {fmt(mibs(pass2), '{:.1f}')} |",
            f"| unavailable / full migration time | {med(down) / med(full):.3f}× | |",
            f"| incremental after {churn} MiB rewritten (s) | {med(incr):.2f} | {fmt(incr)} |",
            f"| incremental: blocks sent (MiB) | {med(incr_sent) / MIB:.1f} "
            f"| {fmt(mibs(incr_sent), '{:.1f}')} |"]
    return "\n".join(rows)


def machine(link: Link, berth_bin: str, args, load_start: str) -> str:
    rev = rb.sh(["git", "-C", rb.REPO, "rev-parse", "--short", "HEAD"])
    parts = os.path.realpath(berth_bin).split(os.sep)
    profile = "release" if "release" in parts else "debug" if "debug" in parts else "unknown"
    lines = [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{rb.cpu_model()}, nproc {os.cpu_count()}"),
        ("memory", rb.mem_total()),
        ("kernel", platform.release()),
        ("load average at start / end", f"{load_start} / {rb.loadavg()}"),
        ("berth", f"git {rev}, {berth_bin} ({profile} build)"),
        ("link", f"veth between two network namespaces, MTU 1500"
                 + (f", shaped to {args.rate} (tbf, burst {args.burst})" if args.rate else
                    ", unshaped")),
        ("tools", f"{rb.sh(['zstd', '--version'])}; {rb.sh(['tar', '--version']).splitlines()[0]}"),
        ("folders", rb.sh(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", "/tmp"])),
    ]
    return "\n".join(f"- {k}: {v}" for k, v in lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    ap.add_argument("--gib", type=float, default=1.0, help="GiB of mixed files in the local volume")
    ap.add_argument("--thin-mib", type=int, default=800, help="MiB of data in the thin volume")
    ap.add_argument("--thin-size", default="1G", help="size of the thin volume (default 1G)")
    ap.add_argument("--rate", help="shape the link from the source (tc tbf rate, e.g. 1gbit)")
    ap.add_argument("--burst", default="1mb", help="tbf burst with --rate (default 1mb)")
    ap.add_argument("--skip-local", action="store_true", help="skip part 1 (local volume)")
    ap.add_argument("--skip-thin", action="store_true", help="skip part 2 (thin volume)")
    ap.add_argument("--out")
    rb.add_binary_args(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, mounts)", file=sys.stderr)
        return 2
    missing = missing_tools()
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    berth_bin = args.berth_bin or rb.default_berth_bin()
    load_start = rb.loadavg()
    work = tempfile.mkdtemp(prefix="mgb-", dir="/tmp")
    link = Link(work)
    tables = []
    try:
        link.up(berth_bin, args.docker_bin, args.rate, args.burst)
        if not args.skip_local:
            tables.append(bench_local(link, work, args.gib, args.runs))
        if not args.skip_thin:
            rb.import_image(link.source, rb.build_image_dir(work))
            tables.append(bench_thin(link, args.runs, args.thin_mib, args.thin_size))
        tables.append(machine(link, berth_bin, args, load_start))
    finally:
        try:
            rb.clean_up(link.engines, work)
        finally:
            link.down()
    rb.emit("\n\n".join(tables), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
