#!/usr/bin/env python3
"""The volume API at scale: berth against a private dockerd, in one run.

    python3 bench/volume_bench.py [--ops 300] [--scale 100000] [--out FILE]

It builds nothing (`cargo build --release --bins --example api_load`
first; BERTH_BIN, DOCKER_BIN, DOCKERD_BIN as for run_bench.py). The API
rows are driven by api_load (crates/berth/examples/api_load.rs), a std-only
Rust client over the unix socket, so the client's own cost (Python's
http.client adds tens of microseconds to each request) does not hide the
engines'. It starts a fresh berth and a fresh
private dockerd (Debian docker.io 20.10), each on its own folder under
/tmp, and talks to both over their unix sockets with the API path /v1.41
(dockerd's newest). Engines alternate within each row; every row cleans up
after itself. Rows:

  0. warm-up, untimed, the same on both engines: 2,000 creates and their
     removes by 50 clients, then 3 s of quiet (berth's folders made ahead
     for creates grow to twice the largest burst seen, at most 1,024);
  1. single client, one keep-alive connection: --ops creates of named
     volumes, then as many inspects, then as many removes (median and p99
     per operation, ms);
  2. 50 clients at once, each with its own keep-alive connection: 2,000
     creates in all (operations per second over the wall time), then the
     same for their removes;
  3. list with 2,000 volumes (median of 10 GET /volumes);
  4. `docker system df -v` (the docker CLI) with 2,000 local volumes each
     holding 10 files of 4 KiB written on the host into its Mountpoint
     (one warm-up, median of 5), and GET /system/df (median of 5);
  5. prune of 10,000 unused volumes (one POST /volumes/prune each: below
     API 1.42 prune takes named volumes too);
  6. at --scale volumes (made by 50 clients): list (median of 5), single
     client create (median of 200, against row 1's at 0 volumes), RSS of
     the daemon, then every volume removed by prune, and RSS after;
  7. RSS of the idle daemon at the start (berth; dockerd and its
     containerd for context).

Stdlib only. Both daemons are stopped by PID and their folders removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402

API = "/v1.41"
CLIENTS = 50


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def must(status: int, want: int, what: str, payload: bytes) -> None:
    if status != want:
        raise RuntimeError(f"{what}: {status} (want {want}): {payload[:300]!r}")


def api_load_bin() -> str:
    """The Rust load client (crates/berth/examples/api_load.rs): its own
    cost per request is a few microseconds; Python's http.client adds tens
    of microseconds to every request of both engines (an inspect: 0.184 ms
    from Python, 0.111 ms from api_load, same daemon)."""
    path = os.path.join(rb.REPO, "target", "release", "examples", "api_load")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run `cargo build --release --example api_load` first")
    return path


def load(e: rb.Engine, op: str, prefix: str, count: int, clients: int = 1) -> dict:
    """Runs api_load against `e`; returns its JSON answer."""
    out = subprocess.run([api_load_bin(), e.sock, op, prefix, str(count), str(clients)],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{e.name}: api_load {op} {prefix}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def rss_kib(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def engine_pids(e: rb.Engine) -> dict[str, int]:
    """The daemon's pid, and for dockerd its containerd's."""
    pids = {e.name: e.proc.pid}
    if e.name == "dockerd":
        for pid in rb.pids_naming(e.dir):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "containerd":
                        pids["containerd"] = pid
            except OSError:
                pass
    return pids


def rss_row(e: rb.Engine) -> str:
    return ", ".join(f"{k} {(rss_kib(p) or 0) / 1024:.1f} MB" for k, p in engine_pids(e).items())


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, what: str, b: float | None, d: float | None, unit: str, higher_better=False):
        fmt = (lambda v: "—" if v is None else f"{v:,.3f} {unit}" if v < 10 else f"{v:,.0f} {unit}")
        if b is None or d is None or not (b and d):
            r = "—"
        else:
            r = f"{b / d:.2f}×"
        self.rows.append((what, fmt(b), fmt(d), r + (" (higher is better)" if higher_better else "")))
        rb.log(f"{what}: berth {fmt(b)}, dockerd {fmt(d)}, ratio {r}")

    def note(self, what: str, b: str, d: str):
        self.rows.append((what, b, d, ""))
        rb.log(f"{what}: berth {b}; dockerd {d}")

    def text(self) -> str:
        out = ["| measure | berth | dockerd | berth/dockerd |", "|---|---:|---:|---:|"]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(out)


def warm_up(engines, total: int = 2000) -> None:
    """Untimed, the same on both engines: a burst of creates and removes
    by 50 clients, then quiet. berth keeps folders made ahead for creates,
    as many as twice the largest burst it has seen (at most 1,024); without
    a burst seen it keeps 32."""
    for e in engines:
        load(e, "create", "wu", total, CLIENTS)
        load(e, "remove", "wu", total, CLIENTS)
    time.sleep(3)


def row_single(t: Table, engines, n: int) -> dict[str, float]:
    """Returns each engine's median create (ms), for row 6."""
    create_median = {}
    for op in ("create", "inspect", "remove"):
        got = {e.name: load(e, op, "sv", n) for e in engines}
        if op == "create":
            create_median = {k: v["median_ms"] for k, v in got.items()}
        for stat, key in (("median", "median_ms"), ("p99", "p99_ms")):
            t.add(f"API volume {op}, one client, {stat} of {n}", got["berth"][key],
                  got["dockerd"][key] if "dockerd" in got else None, "ms")
    return create_median


def row_concurrent(t: Table, engines, total: int = 2000) -> None:
    for op in ("create", "remove"):
        rate = {e.name: total / load(e, op, "cc", total, CLIENTS)["wall_s"] for e in engines}
        t.add(f"API volume {op}, {CLIENTS} clients, {total} in all", rate["berth"],
              rate.get("dockerd"), "ops/s", higher_better=True)


def list_median(e: rb.Engine, reps: int) -> float:
    return load(e, "list", "x", reps)["median_ms"]


def fill_folder(mountpoint: str, files: int = 10, size: int = 4096) -> None:
    for i in range(files):
        with open(os.path.join(mountpoint, f"f{i}"), "wb") as f:
            f.write(os.urandom(size))


def row_list_and_df(t: Table, engines, n: int = 2000) -> None:
    names = [f"ld{i:06d}" for i in range(n)]
    for e in engines:
        load(e, "create", "ld", n, CLIENTS)
        conn = rb.UnixHTTPConnection(e.sock)
        for x in names:
            status, payload = rb.call(conn, "GET", f"{API}/volumes/{x}")
            must(status, 200, "inspect", payload)
            fill_folder(json.loads(payload)["Mountpoint"])
        conn.close()
    lists = {e.name: list_median(e, 10) for e in engines}
    t.add(f"API volume list, {n} volumes, median of 10", lists["berth"], lists.get("dockerd"), "ms")
    for e in engines:
        rb.timed_cli(e, ["system", "df", "-v"])
    df: dict[str, list[float]] = {e.name: [] for e in engines}
    for i in range(5):
        for e in (engines if i % 2 == 0 else list(reversed(engines))):
            df[e.name].append(rb.timed_cli(e, ["system", "df", "-v"]))
    t.add(f"`docker system df -v`, {n} volumes of 10 files, median of 5",
          statistics.median(df["berth"]),
          statistics.median(df["dockerd"]) if "dockerd" in df else None, "ms")
    # The same through the API, without the docker CLI's own start-up
    # (about 35 ms of each command above).
    api_df: dict[str, list[float]] = {e.name: [] for e in engines}
    for e in engines:
        conn = rb.UnixHTTPConnection(e.sock, timeout=600)
        for _ in range(5):
            t0 = time.perf_counter()
            status, payload = rb.call(conn, "GET", f"{API}/system/df")
            api_df[e.name].append((time.perf_counter() - t0) * 1000.0)
            must(status, 200, f"{e.name} df", payload)
        conn.close()
    t.add(f"API GET /system/df, {n} volumes of 10 files, median of 5",
          statistics.median(api_df["berth"]),
          statistics.median(api_df["dockerd"]) if "dockerd" in api_df else None, "ms")
    for e in engines:
        load(e, "remove", "ld", n, CLIENTS)


def prune_all(e: rb.Engine) -> tuple[float, int]:
    conn = rb.UnixHTTPConnection(e.sock, timeout=3600)
    try:
        t0 = time.perf_counter()
        status, payload = rb.call(conn, "POST", f"{API}/volumes/prune")
        wall = (time.perf_counter() - t0) * 1000.0
    finally:
        conn.close()
    must(status, 200, f"{e.name} prune", payload)
    return wall, len(json.loads(payload).get("VolumesDeleted") or [])


def row_prune(t: Table, engines, n: int = 10000) -> None:
    took = {}
    for e in engines:
        load(e, "create", "pr", n, CLIENTS)
        took[e.name], deleted = prune_all(e)
        if deleted != n:
            raise RuntimeError(f"{e.name}: prune deleted {deleted} of {n}")
    t.add(f"API volume prune of {n:,} unused volumes", took["berth"], took.get("dockerd"), "ms")


def row_scale(t: Table, engines, scale: int, single_at_zero: dict) -> None:
    for e in engines:
        wall = load(e, "create", "sc", scale, CLIENTS)["wall_s"]
        rb.log(f"{e.name}: {scale} volumes made in {wall:.1f} s")
    lists = {e.name: list_median(e, 5) for e in engines}
    t.add(f"API volume list, {scale:,} volumes, median of 5", lists["berth"], lists.get("dockerd"), "ms")
    at_scale = {e.name: load(e, "create", "sx", 200)["median_ms"] for e in engines}
    for e in engines:
        load(e, "remove", "sx", 200)
    t.add(f"API volume create, one client, median of 200 at {scale:,} volumes",
          at_scale["berth"], at_scale.get("dockerd"), "ms")
    t.note(f"API volume create, one client, median: at 0 → at {scale:,} volumes",
           *[f"{single_at_zero[x]:.3f} → {at_scale[x]:.3f} ms" if x in at_scale else "—"
             for x in ("berth", "dockerd")])
    rss = {e.name: rss_row(e) for e in engines}
    t.note(f"RSS with {scale:,} volumes", rss["berth"], rss.get("dockerd", "—"))
    took = {}
    for e in engines:
        took[e.name], deleted = prune_all(e)
        if deleted != scale:
            raise RuntimeError(f"{e.name}: prune deleted {deleted} of {scale}")
    t.add(f"API volume prune of {scale:,} unused volumes", took["berth"], took.get("dockerd"), "ms")
    # berth destroys removed volumes' folders in the background and gives
    # freed memory back every 30 s: measured once its trash is empty and
    # one such period has passed (dockerd the same time later).
    trash = os.path.join(engines[0].root, "volumes", ".trash")
    deadline = time.monotonic() + 600
    while os.path.isdir(trash) and os.listdir(trash) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(31)
    rss = {e.name: rss_row(e) for e in engines}
    t.note(f"RSS after removing the {scale:,} (trash empty, +31 s)", rss["berth"],
           rss.get("dockerd", "—"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--scale", type=int, default=100000)
    ap.add_argument("--out")
    rb.add_binary_args(ap)
    args = ap.parse_args()
    berth_bin = args.berth_bin or rb.default_berth_bin()
    work = tempfile.mkdtemp(prefix="vb-", dir="/tmp")
    engines: list[rb.Engine] = []
    t = Table()
    try:
        bin_copy = os.path.join(work, "berth")
        shutil.copy2(berth_bin, bin_copy)
        engines = [rb.Berth(bin_copy, args.docker_bin)]
        if args.dockerd_bin:
            engines.append(rb.Dockerd(args.dockerd_bin, args.docker_bin))
        else:
            rb.loud("dockerd not found: berth only")
        for e in engines:
            e.start(timeout=90)
        time.sleep(3)
        idle = {e.name: rss_row(e) for e in engines}
        t.note("RSS, idle after start", idle["berth"], idle.get("dockerd", "—"))
        warm_up(engines)
        zero = row_single(t, engines, args.ops)
        row_concurrent(t, engines)
        row_list_and_df(t, engines)
        row_prune(t, engines)
        if args.scale:
            row_scale(t, engines, args.scale, zero)
    finally:
        rb.clean_up(engines, work)
    rb.emit(t.text(), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
