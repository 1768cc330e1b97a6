#!/usr/bin/env python3
"""Benchmark berth against a private dockerd, through the real docker CLI.

    python3 bench/run_bench.py [--runs 20] [--out FILE]
    python3 bench/run_bench.py --only run,exec [--runs 10]
    python3 bench/run_bench.py --thin [--thin-only df] [--thin-volumes N]
    python3 bench/run_bench.py --backup-only [--backup-reps 3]
    python3 bench/run_bench.py --resources [--resources-scale 0.1]

It builds nothing: run `cargo build --release` first. In one run it

  * starts a fresh `berth daemon` and a fresh private dockerd (Debian
    docker.io 20.10), each on its own folder made by
    tempfile.mkdtemp(dir="/tmp"); if dockerd is not installed the dockerd
    column is skipped with a loud message;
  * imports the same busybox image (busybox-static's /bin/busybox plus one
    symlink per applet) into both as benchimg:1;
  * times, with the docker CLI and DOCKER_API_VERSION=1.41 for both engines:
      0. `docker version` as a floor (CLI start-up plus its small requests)
      1. docker run --rm --network none benchimg:1 true
      2. docker run --rm --network none -v benchvol:/d benchimg:1 true
      2b. docker exec benchexec true, in a container each engine keeps
         running for it (`docker run -d --network none --name benchexec
         benchimg:1 sleep 3600`, started before the warm-ups and removed
         with `docker rm -f` after the timed runs, both untimed)
         (0-2b: 3 warm-up runs each, then --runs timed runs, engines
         alternating; `--only PART,…` runs only those parts of 0-4:
         version, run, run-volume, exec, volume-api, volume-cli)
      3. volume API calls over ONE keep-alive HTTP connection per socket:
         create x500, inspect x500, list with 500 volumes x20, remove x500
         (each engine in turn, phase by phase; per-op median)
      4. `docker volume ls` and `docker system df -v` with 1000 volumes
         (one warm-up, then median of 5, engines alternating);
      5. thin volumes (berth runs with --thin-pool-size 40G; `--thin` runs
         only this section, `--no-thin` skips it):
         a. snapshot and clone of a 10 GiB thin volume holding 1 GiB of
            /dev/urandom (POST /berth/v1/volumes/snapsrc/snapshots|clone over
            one keep-alive connection, 1 warm-up, median of 10, each result
            deleted untimed) against dockerd copying the same 1 GiB with
            `docker run … sh -c 'cd /from && tar cf - . | tar xf - -C /to'`
            (median of 3);
         b. sequential 1 GiB write (busybox dd, conv=fsync) and read (after
            drop_caches) in a thin volume in a container, on the host in a
            folder on the berth root's filesystem, and in a dockerd local
            volume for context (1 warm-up pass, median of 5; timed by
            busybox `time`, 10 ms resolution);
         c. `docker system df -v` with 1000 volumes (--thin-volumes) that
            all hold the same content: DF_DIRS (10) folders of DF_FILES
            (10) files of 4 KiB, plus one 1 MiB file, pseudo-random bytes
            from random.Random(DF_SEED), 1.4 MiB in 101 files (111 entries
            with the folders), written once under the run's work folder.
            berth: one thin volume tv0000 (size=64M) filled with
            `docker run --rm --network none -v tv0000:/d -v <content>:/t:ro
            benchimg:1 cp -a /t/. /d/`, then tv0001… made by
            POST /berth/v1/volumes/tv0000/clone {"Target": …} over one
            keep-alive connection (the clones share its blocks). dockerd:
            local volumes made by POST /volumes/create, the content copied
            into each volume's Mountpoint on the host (shutil.copytree).
            Before the timing, the last volume on each engine must hold the
            same files (count, bytes, sha256, read in a container). Then 1
            warm-up and the median of 5 (engines alternating), plus the bare
            GET /system/df; each volume's UsageData.Size is noted, not
            compared (berth thin: allocated bytes of the image; dockerd:
            the file sizes it walks). `--thin-only snapshot|throughput|df`
            runs one part of this section;
      6. volume backup and restore (`--backup-only` runs only this section,
         `--no-backup` skips it; --thin and --backup-only together run both).
         The content: 64 files of 16 MiB of pseudo-random bytes from
         random.Random(BK_SEED) (1 GiB) plus the df content of 5c, written once
         into a folder under the run's work folder, copied on the host into
         the Mountpoint (checked to lie under the engine's root) of a local
         volume `bkvol` on each engine; then the folder is removed. Archives go
         to <work>/backup (/backup in containers).
         berth: backup `berth -H <berth> volume export bkvol -o
         <work>/backup/berth-backup.tar` (the binary the daemon runs); restore
         `berth volume import bkdst <that file>` into a new `bkdst`.
         dockerd, as docs.docker.com documents it: backup `docker run --rm
         --network none -v bkvol:/data -v <work>/backup:/backup benchimg:1 tar
         cf /backup/docker-backup.tar -C /data .`; restore `docker run … -v
         bkdst:/data … tar xf /backup/docker-backup.tar -C /data` into a new
         `bkdst`. For context, the same `docker run … tar cf` backup on berth.
         `volume create bkdst` before and `volume rm bkdst` after each restore
         are untimed. One warm-up run of each, which is the check: every
         archive must list the content's names (`tar -tf`), every restored
         `bkdst` must hold the same entries and sha256 of every file (read on
         the host from its Mountpoint); a failed check makes that cell n/a with
         a NOTE. Then the median of --backup-reps (3), order reversed every
         other round; `sync` before each run, and before each backup the page
         cache is dropped (whether that worked is noted); MB/s = 1 GiB / time;
         the time of a `sync` right after each run is noted, not counted;
      7. daemon resources under load (`--resources` runs only this section,
         first, right after the image import; it is never part of a run
         without section flags). For berth the `berth daemon` process, for
         Docker dockerd plus the containerd it starts (summed and each):
         VmRSS and VmHWM from /proc/PID/status, the entries of /proc/PID/fd,
         Threads; also the shims (berth shim / containerd-shim*) and zombie
         children. Sampled idle (5 s after the import), after every 1,000 of
         10,000 volume API ops (create with two labels, inspect, list plain or
         filtered by label, remove once 100 are alive), after every 100 of
         500 runs (create+start+wait+remove of `true` with -v resvol:/d,
         network none), and idle again 5 s after the last request. Engines
         take turns block by block. One connection per request, or one
         keep-alive connection with --resources-conn keep-alive;
         --resources-scale 0.1 does a tenth of the work. Prints the samples
         (phase × engine), berth/dockerd ratios, and the growth of fds and
         threads from idle start to idle end;
  * prints a markdown table (operation | berth | dockerd | berth/dockerd),
    a second one for the thin volumes, a third for backup and restore
    (measurement | berth | dockerd | berth/dockerd), and the machine it ran
    on; --out also writes them to FILE. Raw samples go to stderr;
    --keep-logs DIR keeps both daemon logs.

Every section removes its volumes. Both daemons are stopped by PID
(SIGTERM, wait, SIGKILL) and, in a finally block, their folders are
unmounted (lazily, deepest first), the loop devices backed by files under
them are waited for until they detach (`losetup -d` after 30 s), and the
folders are removed. No other dockerd or berth is touched.

Environment (all optional): BERTH_BIN, DOCKER_BIN, DOCKERD_BIN.
Stdlib only.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = "1.41"
IMAGE = "benchimg:1"
BUSYBOX = "/bin/busybox"

# The docker CLI must not pick these up from the caller's shell.
_DOCKER_ENV_DROP = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_API_VERSION",
                    "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS", "BERTH_HOST")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    bar = "!" * 72
    print(f"{bar}\n!!! {msg}\n{bar}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# HTTP over AF_UNIX
# ---------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX; counts how often it had to (re)connect."""

    def __init__(self, path: str, timeout: float = 60.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path
        self.connects = 0

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.connects += 1


def call(conn: UnixHTTPConnection, method: str, path: str, body=None):
    """One request on ``conn``; returns (status, body bytes)."""
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    return resp.status, payload


def ping(sock_path: str) -> bool:
    conn = UnixHTTPConnection(sock_path, timeout=2)
    try:
        return call(conn, "GET", "/_ping")[0] == 200
    except OSError:
        return False
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Processes, mounts, folders
# ---------------------------------------------------------------------------


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    base = os.path.realpath(path)
    found = set()
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 5:
                    continue
                mp = _unescape_mountinfo(fields[4])
                if mp == base or mp.startswith(base + "/"):
                    found.add(mp)
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.count("/"), len(p)), reverse=True)


def unmount_all_under(path: str) -> None:
    for _ in range(5):  # stacked mounts need several passes
        mps = mounts_under(path)
        if not mps:
            return
        for mp in mps:
            subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
    left = mounts_under(path)
    if left:
        log(f"WARNING: mounts still present under {path}: {left}")


def _backing_file(dev: str) -> str | None:
    """The backing file of /dev/<dev>, or None when it is not bound."""
    try:
        with open(f"/sys/block/{dev}/loop/backing_file") as f:
            b = f.read().strip()
    except OSError:
        return None
    if b.endswith(" (deleted)"):
        b = b[: -len(" (deleted)")]
    return b or None


def loops_backed_under(path: str) -> dict[str, str]:
    """Loop devices whose backing file lies under ``path``: {loopN: file}."""
    base = os.path.realpath(path)
    found = {}
    try:
        devs = [d for d in os.listdir("/sys/block") if d.startswith("loop")]
    except OSError:
        return found
    for dev in devs:
        b = _backing_file(dev)
        if b and (b == base or b.startswith(base + "/")):
            found[dev] = b
    return found


def _still_bound(dev: str, recorded: str, base: str) -> bool:
    b = _backing_file(dev)
    if b is None:
        return False
    if b == recorded or b.startswith(base + "/"):
        return True
    # After a lazy unmount the kernel may show the path relative to the
    # detached mount; a path that does not exist on the host is still ours.
    # One that exists elsewhere means the device was freed and reused.
    return not os.path.exists(b)


def wait_loops_detached(path: str, loops: dict[str, str], timeout: float = 30.0) -> None:
    """Waits until our loop devices (autoclear) let go; LOOP_CLR_FD by
    `losetup -d` on the ones that do not, then warns about any still bound."""
    base = os.path.realpath(path)
    loops = dict(loops)
    loops.update(loops_backed_under(path))
    if not loops:
        return
    deadline = time.monotonic() + timeout
    left = loops
    while True:
        left = {d: b for d, b in left.items() if _still_bound(d, b, base)}
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if left:
        log(f"loop devices still bound {timeout:.0f}s after unmount, detaching: {left}")
        for dev in left:
            subprocess.run(["losetup", "-d", f"/dev/{dev}"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        end = time.monotonic() + 5
        while left and time.monotonic() < end:
            left = {d: b for d, b in left.items() if _still_bound(d, b, base)}
            time.sleep(0.05)
        if left:
            log(f"WARNING: loop devices backed by files under {path} still bound: {left}")
    else:
        log(f"loop devices backed by files under {path} detached: {sorted(loops)}")


def remove_tree(path: str | None) -> None:
    if path and os.path.exists(path):
        loops = loops_backed_under(path)  # before the unmount hides their paths
        unmount_all_under(path)
        wait_loops_detached(path, loops)
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):
            log(f"WARNING: could not remove {path} completely")


def stop_proc(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM the process we started (by its PID), wait, SIGKILL fallback."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} ignored SIGTERM for {timeout}s: SIGKILL")
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


def pids_naming(needle: str) -> list[int]:
    """PIDs whose command line contains ``needle`` (one of our unique temp folders)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append(int(entry))
    return out


def kill_leftovers(folder: str) -> None:
    """SIGKILL, by PID, processes our daemon left behind (their command line
    names our unique temp folder: dockerd's containerd and shims, berth shims)."""
    for pid in pids_naming(folder):
        try:
            os.kill(pid, signal.SIGKILL)
            log(f"killed leftover pid {pid} (names {folder})")
        except ProcessLookupError:
            pass


def docker_env(config_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _DOCKER_ENV_DROP}
    env["DOCKER_API_VERSION"] = API
    env["DOCKER_CONFIG"] = config_dir  # no user config, no credential helpers
    env["DOCKER_CLI_HINTS"] = "false"
    return env


# ---------------------------------------------------------------------------
# The two engines
# ---------------------------------------------------------------------------


class Engine:
    name = "?"

    def __init__(self, prefix: str, docker_bin: str):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.docker_bin = docker_bin
        self.config = os.path.join(self.dir, "cfg")
        os.makedirs(self.config)
        self.log = os.path.join(self.dir, "daemon.log")
        self.proc: subprocess.Popen | None = None
        self.sock = ""

    @property
    def host(self) -> str:
        return "unix://" + self.sock

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float) -> None:
        if len(self.sock.encode()) >= 100:
            raise RuntimeError(f"socket path too long: {self.sock}")
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} "
                                   f"during start-up\n{tail(self.log)}")
            if os.path.exists(self.sock) and ping(self.sock):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout}s\n{tail(self.log)}")

    def docker(self, *args: str, input_file=None, check: bool = True):
        argv = [self.docker_bin, "-H", self.host, *args]
        p = subprocess.run(argv, env=docker_env(self.config), stdin=input_file,
                           capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise RuntimeError(f"{self.name}: `{' '.join(args)}` failed with exit "
                               f"{p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}\n"
                               f"--- daemon log ---\n{tail(self.log)}")
        return p

    def stop_and_clean(self) -> None:
        try:
            stop_proc(self.proc, timeout=30)
        finally:
            kill_leftovers(self.dir)
            remove_tree(self.dir)


class Berth(Engine):
    name = "berth"

    def __init__(self, bin_path: str, docker_bin: str, thin_pool_size: str = "40G"):
        super().__init__("bb-", docker_bin)
        self.bin = bin_path
        self.root = os.path.join(self.dir, "root")
        self.sock = os.path.join(self.dir, "b.sock")
        self.pidfile = os.path.join(self.dir, "b.pid")
        self.thin_pool_size = thin_pool_size

    def argv(self):
        # The pool file is made at the first thin create, so the sections
        # that use no thin volume do not pay for it.
        return [self.bin, "daemon", "--host", self.host, "--root", self.root,
                "--pidfile", self.pidfile, "--thin-pool-size", self.thin_pool_size]


class Dockerd(Engine):
    name = "dockerd"

    def __init__(self, bin_path: str, docker_bin: str):
        super().__init__("bd-", docker_bin)
        self.bin = bin_path
        self.root = os.path.join(self.dir, "root")
        self.exec_root = os.path.join(self.dir, "exec")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.pidfile = os.path.join(self.dir, "docker.pid")

    def argv(self):
        return [self.bin, "--data-root", self.root, "--exec-root", self.exec_root,
                "--host", self.host, "--pidfile", self.pidfile,
                "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge=none"]


def tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------
# The image
# ---------------------------------------------------------------------------


def is_static_elf(path: str) -> bool:
    """True when the ELF file has no PT_INTERP program header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        end = "<" if head[5] == 1 else ">"
        phoff = struct.unpack(end + "Q", head[0x20:0x28])[0]
        phentsize, phnum = struct.unpack(end + "HH", head[0x36:0x3A])
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        (p_type,) = struct.unpack(end + "I", table[i * phentsize:i * phentsize + 4])
        if p_type == 3:  # PT_INTERP
            return False
    return True


def build_image_dir(parent: str) -> str:
    if not os.path.exists(BUSYBOX):
        raise RuntimeError(f"{BUSYBOX} missing: apt-get install busybox-static")
    if not is_static_elf(BUSYBOX):
        raise RuntimeError(f"{BUSYBOX} is dynamically linked: install busybox-static")
    root = os.path.join(parent, "img")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a == "busybox":
            continue
        os.symlink("busybox", os.path.join(root, "bin", a))
    return root


def import_image(engine: Engine, img_dir: str) -> None:
    tar = subprocess.Popen(["tar", "-C", img_dir, "-c", "."], stdout=subprocess.PIPE)
    try:
        engine.docker("import", "-", IMAGE, input_file=tar.stdout)
    finally:
        tar.stdout.close()
        rc = tar.wait()
    if rc != 0:
        raise RuntimeError(f"tar exited with {rc}")


# ---------------------------------------------------------------------------
# Statistics and the table
# ---------------------------------------------------------------------------


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]  # nearest rank


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def ratio(b: float | None, d: float | None) -> str:
    if b is None or d is None or d == 0:
        return "n/a"
    return f"{b / d:.2f}×"


class Results:
    def __init__(self):
        self.rows: list[tuple[str, float | None, float | None]] = []
        self.raw: dict[str, dict[str, list[float]]] = {}
        self.notes: list[str] = []

    def add(self, op: str, b: float | None, d: float | None) -> None:
        self.rows.append((op, b, d))

    def table(self) -> str:
        out = ["| operation | berth | dockerd | berth/dockerd |",
               "|---|---:|---:|---:|"]
        for op, b, d in self.rows:
            out.append(f"| {op} | {fmt_ms(b)} | {fmt_ms(d)} | {ratio(b, d)} |")
        return "\n".join(out)


# ---------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------


def timed_cli(engine: Engine, args: list[str]) -> float:
    t0 = time.perf_counter()
    engine.docker(*args)
    return (time.perf_counter() - t0) * 1000.0


def bench_run(res: Results, engines: list[Engine], label: str, args: list[str],
              runs: int, warmup: int = 3, stats=("median", "p90", "min")) -> None:
    for e in engines:
        for _ in range(warmup):
            timed_cli(e, args)
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    # Alternate the engines so that background noise hits both alike.
    for i in range(runs):
        order = engines if i % 2 == 0 else list(reversed(engines))
        for e in order:
            samples[e.name].append(timed_cli(e, args))
    res.raw[label] = samples
    b = samples.get("berth")
    d = samples.get("dockerd")
    for stat, fn in (("median", statistics.median), ("p90", p90), ("min", min)):
        if stat not in stats:
            continue
        res.add(f"{label} — {stat} of {runs}",
                fn(b) if b else None, fn(d) if d else None)
    for name, xs in samples.items():
        log(f"{label} [{name}] ms: " + " ".join(f"{x:.0f}" for x in xs))


EXEC_CONTAINER = "benchexec"


def bench_exec(res: Results, engines: list[Engine], runs: int) -> None:
    """`docker exec benchexec true` timed as `bench_run` times `docker run`,
    in a container each engine keeps running meanwhile (started and
    removed untimed; removed also when the timing fails)."""
    try:
        for e in engines:
            e.docker("run", "-d", "--network", "none", "--name", EXEC_CONTAINER, IMAGE,
                     "sleep", "3600")
        bench_run(res, engines, f"`docker exec {EXEC_CONTAINER} true` (a running container)",
                  ["exec", EXEC_CONTAINER, "true"], runs)
    finally:
        for e in engines:
            p = e.docker("rm", "-f", EXEC_CONTAINER, check=False)
            if p.returncode != 0 and "No such container" not in p.stderr:
                log(f"WARNING: {e.name}: could not remove {EXEC_CONTAINER}: {p.stderr.strip()}")


# Parts of the default section (0-4 of the docstring) that --only selects.
MAIN_PARTS = ("version", "run", "run-volume", "exec", "volume-api", "volume-cli")


def parse_only(value: str) -> set[str]:
    parts = {p.strip() for p in value.split(",") if p.strip()}
    bad = sorted(parts - set(MAIN_PARTS))
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {', '.join(bad) or '(none)'}: choose from {', '.join(MAIN_PARTS)}")
    return parts


def api_ops(conn: UnixHTTPConnection, name: str, phase: str, n: int, prefix: str,
            reps: int) -> list[float]:
    times = []
    count = reps if phase == "list" else n
    for i in range(count):
        vname = f"{prefix}{i:04d}"
        if phase == "create":
            req = ("POST", f"/v{API}/volumes/create", {"Name": vname}, 201)
        elif phase == "inspect":
            req = ("GET", f"/v{API}/volumes/{vname}", None, 200)
        elif phase == "list":
            req = ("GET", f"/v{API}/volumes", None, 200)
        else:
            req = ("DELETE", f"/v{API}/volumes/{vname}", None, 204)
        method, path, body, want = req
        t0 = time.perf_counter()
        status, payload = call(conn, method, path, body)
        times.append((time.perf_counter() - t0) * 1000.0)
        if status != want:
            raise RuntimeError(f"{name}: {method} {path} -> {status} (want {want}): "
                               f"{payload[:300]!r}")
        if phase == "list" and i == 0:
            vols = json.loads(payload).get("Volumes") or []
            got = sum(1 for v in vols if v["Name"].startswith(prefix))
            if got != n:
                raise RuntimeError(f"{name}: list shows {got} of {n} benchmark volumes")
    return times


def bench_volume_api(res: Results, engines: list[Engine], n: int, list_reps: int) -> None:
    conns = {e.name: UnixHTTPConnection(e.sock) for e in engines}
    try:
        for phase, label in (("create", f"API volume create (named) ×{n}, per op"),
                             ("inspect", f"API volume inspect ×{n}, per op"),
                             ("list", f"API volume list with {n} volumes ×{list_reps}, per op"),
                             ("remove", f"API volume remove ×{n}, per op")):
            med = {}
            for e in engines:
                xs = api_ops(conns[e.name], e.name, phase, n, "bv", list_reps)
                med[e.name] = statistics.median(xs)
                res.raw.setdefault(label, {})[e.name] = xs
                log(f"{label} [{e.name}]: median {med[e.name]:.3f} ms, "
                    f"p90 {p90(xs):.3f}, max {max(xs):.3f}, total {sum(xs):.0f} ms")
            res.add(label, med.get("berth"), med.get("dockerd"))
        for e in engines:
            c = conns[e.name].connects
            if c != 1:
                msg = (f"{e.name}: the volume API benchmark needed {c} connections "
                       f"(keep-alive was not kept for all {3 * n + list_reps} requests)")
                res.notes.append(msg)
                loud(msg)
    finally:
        for c in conns.values():
            c.close()


def bench_cli_volumes(res: Results, engines: list[Engine], n: int, reps: int) -> None:
    for e in engines:
        conn = UnixHTTPConnection(e.sock)
        try:
            for i in range(n):
                status, payload = call(conn, "POST", f"/v{API}/volumes/create",
                                       {"Name": f"cv{i:04d}"})
                if status != 201:
                    raise RuntimeError(f"{e.name}: volume create -> {status}: {payload[:200]!r}")
        finally:
            conn.close()
        # one warm-up each, and a sanity check of the count
        out = e.docker("volume", "ls", "-q").stdout.split()
        got = sum(1 for v in out if v.startswith("cv"))
        if got != n:
            raise RuntimeError(f"{e.name}: docker volume ls shows {got} of {n} volumes")
        e.docker("system", "df", "-v")
    for label, args in ((f"`docker volume ls`, {n} volumes", ["volume", "ls"]),
                        (f"`docker system df -v`, {n} volumes", ["system", "df", "-v"])):
        samples: dict[str, list[float]] = {e.name: [] for e in engines}
        for i in range(reps):
            order = engines if i % 2 == 0 else list(reversed(engines))
            for e in order:
                samples[e.name].append(timed_cli(e, args))
        res.raw[label] = samples
        for name, xs in samples.items():
            log(f"{label} [{name}] ms: " + " ".join(f"{x:.0f}" for x in xs))
        med = {k: statistics.median(v) for k, v in samples.items()}
        res.add(f"{label} — median of {reps}", med.get("berth"), med.get("dockerd"))
    # Leave no volumes behind for the sections that follow.
    for e in engines:
        remove_volumes(e, [f"cv{i:04d}" for i in range(n)])


def remove_volumes(engine: Engine, names: list[str], path_prefix: str = f"/v{API}") -> None:
    """DELETE each volume over one connection; 404 is fine, other failures are logged."""
    conn = UnixHTTPConnection(engine.sock)
    bad = []
    try:
        for name in names:
            try:
                status, payload = call(conn, "DELETE", f"{path_prefix}/volumes/{name}")
            except OSError as exc:
                bad.append(f"{name}: {exc!r}")
                conn.close()
                continue
            if status not in (204, 404):
                bad.append(f"{name}: {status} {payload[:200]!r}")
    finally:
        conn.close()
    if bad:
        log(f"WARNING: {engine.name}: could not remove {len(bad)} volume(s): {bad[:5]}")


# ---------------------------------------------------------------------------
# Thin volumes (--thin)
# ---------------------------------------------------------------------------

MiB = 1 << 20
GiB = 1 << 30
DD_COUNT = 1024  # 1 MiB blocks: 1 GiB
TAR_COPY = "cd /from && tar cf - . | tar xf - -C /to"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "n/a"
    if r < 0.01:
        return f"{r:.2g}× (1/{1 / r:.0f})" if r > 0 else "0×"
    return f"{r:.2f}×"


def fmt_mbs(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f} MB/s"


class ThinTable:
    """measurement | berth | reference | ratio | aim | met?"""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str, str]] = []
        self.notes: list[str] = []
        self.failed = 0

    def add(self, what: str, berth: str, reference: str, ratio_s: str,
            aim: str = "—", met: bool | None = None) -> None:
        verdict = "—" if met is None else ("yes" if met else "**no**")
        self.rows.append((what, berth, reference, ratio_s, aim, verdict))

    def fail(self, part: str, exc: BaseException) -> None:
        msg = f"{part} FAILED: {exc}"
        self.failed += 1
        loud(msg)
        self.notes.append(msg.splitlines()[0][:300])

    def table(self) -> str:
        out = ["| measurement | berth | reference | ratio | aim | met? |",
               "|---|---:|---|---:|---|---|"]
        for row in self.rows:
            out.append("| " + " | ".join(row) + " |")
        return "\n".join(out)


def api(conn: UnixHTTPConnection, who: str, method: str, path: str, body=None,
        want: int = 200) -> bytes:
    status, payload = call(conn, method, path, body)
    if status != want:
        raise RuntimeError(f"{who}: {method} {path} -> {status} (want {want}): "
                           f"{payload[:300]!r}")
    return payload


def timed_api(conn: UnixHTTPConnection, who: str, method: str, path: str, body=None,
              want: int = 200) -> float:
    t0 = time.perf_counter()
    api(conn, who, method, path, body, want)
    return (time.perf_counter() - t0) * 1000.0


def pool_allocated(conn: UnixHTTPConnection) -> int | None:
    pools = json.loads(api(conn, "berth", "GET", "/berth/v1/pools"))
    for p in pools:
        if p.get("Driver") == "thin":
            return int(p.get("Allocated") or 0)
    return None


def fill_volume(engine: Engine, volume: str) -> None:
    """1 GiB of /dev/urandom into <volume>/data."""
    engine.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/d", IMAGE,
                  "dd", "if=/dev/urandom", "of=/d/data", "bs=1M", f"count={DD_COUNT}")


def file_size_in(engine: Engine, volume: str, path: str) -> int:
    out = engine.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/d", IMAGE,
                        "stat", "-c", "%s", f"/d/{path}").stdout.strip()
    return int(out)


SNAPSRC = "/berth/v1/volumes/snapsrc"


def median_or_none(xs: list[float] | None) -> float | None:
    """The median of ``xs``; None when there are no samples."""
    return statistics.median(xs) if xs else None


def thin_snapshot_clone(tt: ThinTable, berth: Berth, dockerd: Dockerd | None,
                        reps: int, tar_reps: int) -> None:
    snap_ms, clone_ms = berth_snapshot_clone_ms(tt, berth, reps)
    tar_ms = dockerd_tar_copy_ms(tt, dockerd, tar_reps) if dockerd is not None else None
    add_snapshot_clone_rows(tt, reps, tar_reps, snap_ms, clone_ms, tar_ms)


def berth_snapshot_clone_ms(tt: ThinTable, berth: Berth,
                            reps: int) -> tuple[list[float] | None, list[float] | None]:
    """Timed snapshots and clones of snapsrc, a 10 GiB thin volume holding 1 GiB;
    (None, None) after a failure. Every volume made here is removed."""
    clones = ["cwarm", "cchk"] + [f"c{i}" for i in range(reps)]
    try:
        berth.docker("volume", "create", "-d", "thin", "-o", "size=10G", "snapsrc")
        fill_volume(berth, "snapsrc")
        conn = UnixHTTPConnection(berth.sock)
        try:
            return time_snapshots_and_clones(tt, berth, conn, reps)
        finally:
            conn.close()
    except Exception as exc:
        # no partial samples under a "median of N" label
        tt.fail("thin snapshot/clone on berth", exc)
        return None, None
    finally:
        remove_volumes(berth, ["snapsrc", *clones])  # also drops any snapshot left


def time_snapshots_and_clones(tt: ThinTable, berth: Berth, conn: UnixHTTPConnection,
                              reps: int) -> tuple[list[float], list[float]]:
    """(snapshot ms, clone ms) of the filled snapsrc, over ``conn``; the delete
    times and the clone check go to the notes."""
    note_snapsrc_allocation(tt, conn)
    snap, snap_del = time_snapshot_create_delete(conn, reps)
    clone, clone_del = time_clone_create_delete(conn, reps)
    for label, xs in (("snapshot create", snap), ("snapshot delete", snap_del),
                      ("clone", clone), ("clone delete (DELETE /volumes)", clone_del)):
        log(f"thin {label} [berth] ms: " + " ".join(f"{x:.2f}" for x in xs)
            + f" (median {statistics.median(xs):.2f})")
    tt.notes.append(
        f"not in the timed figures: deleting a snapshot took a median of "
        f"{statistics.median(snap_del):.1f} ms and removing a clone "
        f"{statistics.median(clone_del):.1f} ms (both punch the image and FITRIM the pool)")
    if conn.connects != 1:
        tt.notes.append(f"snapshot/clone timing needed {conn.connects} connections")
    check_clone_holds_data(tt, berth, conn)
    return snap, clone


def note_snapsrc_allocation(tt: ThinTable, conn: UnixHTTPConnection) -> None:
    st = json.loads(api(conn, "berth", "GET", f"/v{API}/volumes/snapsrc")).get("Status") or {}
    log(f"snapsrc: SizeBytes {st.get('SizeBytes')}, Allocated {st.get('Allocated')}")
    if int(st.get("Allocated") or 0) < GiB:
        tt.notes.append(f"snapsrc reports Allocated {st.get('Allocated')} bytes, "
                        f"less than the 1 GiB written")


def time_snapshot_create_delete(conn: UnixHTTPConnection,
                                reps: int) -> tuple[list[float], list[float]]:
    """(create ms, delete ms) of ``reps`` snapshots of snapsrc, after one warm-up."""
    b = "berth"
    api(conn, b, "POST", f"{SNAPSRC}/snapshots", {"Name": "swarm"}, 201)
    api(conn, b, "DELETE", f"{SNAPSRC}/snapshots/swarm", None, 204)
    create, delete = [], []
    for i in range(reps):
        create.append(timed_api(conn, b, "POST", f"{SNAPSRC}/snapshots", {"Name": f"s{i}"}, 201))
        delete.append(timed_api(conn, b, "DELETE", f"{SNAPSRC}/snapshots/s{i}", None, 204))
    return create, delete


def time_clone_create_delete(conn: UnixHTTPConnection,
                             reps: int) -> tuple[list[float], list[float]]:
    """(clone ms, volume remove ms) of ``reps`` clones of snapsrc, after one warm-up."""
    b = "berth"
    api(conn, b, "POST", f"{SNAPSRC}/clone", {"Target": "cwarm"}, 201)
    api(conn, b, "DELETE", f"/v{API}/volumes/cwarm", None, 204)
    create, delete = [], []
    for i in range(reps):
        create.append(timed_api(conn, b, "POST", f"{SNAPSRC}/clone", {"Target": f"c{i}"}, 201))
        delete.append(timed_api(conn, b, "DELETE", f"/v{API}/volumes/c{i}", None, 204))
    return create, delete


def check_clone_holds_data(tt: ThinTable, berth: Berth, conn: UnixHTTPConnection) -> None:
    """Sanity: a clone shares blocks and holds the data."""
    b = "berth"
    before = pool_allocated(conn)
    api(conn, b, "POST", f"{SNAPSRC}/clone", {"Target": "cchk"}, 201)
    after = pool_allocated(conn)
    size = file_size_in(berth, "cchk", "data")
    api(conn, b, "DELETE", f"/v{API}/volumes/cchk", None, 204)
    grew = None if before is None or after is None else (after - before) / MiB
    log(f"clone check: pool allocation grew by {grew} MiB; /d/data in the clone "
        f"is {size} bytes")
    tt.notes.append(f"check: a clone of snapsrc holds the 1 GiB file ({size} bytes) "
                    f"and grew the pool's allocation by "
                    f"{'?' if grew is None else f'{grew:.1f}'} MiB")
    if size != DD_COUNT * MiB:
        tt.notes.append(f"the clone's /d/data is {size} bytes, not {DD_COUNT * MiB}")


def dockerd_tar_copy_ms(tt: ThinTable, dockerd: Dockerd, tar_reps: int) -> list[float] | None:
    """Timed `docker run` tar copies of 1 GiB into new local volumes; None after a
    failure. Every volume made here is removed."""
    dsts = [f"dst{i}" for i in range(tar_reps)]
    try:
        dockerd.docker("volume", "create", "src")
        fill_volume(dockerd, "src")
        tar = []
        for i, dst in enumerate(dsts):
            tar.append(timed_cli(dockerd, ["run", "--rm", "--network", "none",
                                           "-v", "src:/from", "-v", f"{dst}:/to",
                                           IMAGE, "sh", "-c", TAR_COPY]))
            if i == len(dsts) - 1:
                size = file_size_in(dockerd, dst, "data")
                if size != DD_COUNT * MiB:
                    tt.notes.append(f"dockerd's tar copy holds {size} bytes, "
                                    f"not {DD_COUNT * MiB}")
            dockerd.docker("volume", "rm", dst)
        log("tar copy [dockerd] ms: " + " ".join(f"{x:.0f}" for x in tar))
        return tar
    except Exception as exc:
        tt.fail("tar copy on dockerd", exc)
        return None
    finally:
        remove_volumes(dockerd, ["src", *dsts])


def add_snapshot_clone_rows(tt: ThinTable, reps: int, tar_reps: int,
                            snap_ms: list[float] | None, clone_ms: list[float] | None,
                            tar_ms: list[float] | None) -> None:
    tar_med = median_or_none(tar_ms)
    ref = (f"dockerd: `docker run` tar copy of the same 1 GiB into a new local volume, "
           f"median of {tar_reps}: {fmt_ms(tar_med)}")
    for what, xs in ((f"snapshot, 10 GiB thin volume holding 1 GiB "
                      f"(`POST /berth/v1/volumes/snapsrc/snapshots`), median of {reps}", snap_ms),
                     (f"clone, same volume (`POST /berth/v1/volumes/snapsrc/clone`), "
                      f"median of {reps}", clone_ms)):
        med = median_or_none(xs)
        tt.add(what, fmt_ms(med), ref,
               fmt_ratio(med / tar_med if med is not None and tar_med else None),
               "berth ≤ 50 ms", None if med is None else med <= 50.0)


def parse_busybox_time(stderr: str) -> float:
    """Seconds from busybox `time` ("real\t0m 1.23s"; 10 ms resolution)."""
    m = re.search(r"real\s+(?:(\d+)h\s*)?(\d+)m\s*([\d.]+)s", stderr)
    if not m:
        raise RuntimeError(f"no `real` time in: {stderr[-300:]!r}")
    return int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def check_dd(stderr: str, what: str) -> None:
    if f"{DD_COUNT}+0 records out" not in stderr:
        raise RuntimeError(f"{what}: dd did not copy {DD_COUNT} blocks: {stderr[-300:]!r}")


def drop_caches() -> str | None:
    """sync + drop the page cache; the error as text when that is not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return None
    except OSError as exc:
        return repr(exc)


def dd_write_argv(path: str) -> list[str]:
    return ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={DD_COUNT}", "conv=fsync"]


def dd_read_argv(path: str) -> list[str]:
    return ["dd", f"if={path}", "of=/dev/null", "bs=1M"]


def dd_in_container(e: Engine, vol: str, dd: list[str]) -> tuple[float, str]:
    """Seconds and stderr of busybox `time dd …` in a container with ``vol`` on /d."""
    p = e.docker("run", "--rm", "--network", "none", "-v", f"{vol}:/d", IMAGE, "time", *dd)
    return parse_busybox_time(p.stderr), p.stderr


def dd_on_host(dd: list[str]) -> tuple[float, str]:
    """Seconds and stderr of busybox `time dd …` on the host."""
    p = subprocess.run([BUSYBOX, "time", BUSYBOX, *dd], capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"host dd failed ({p.returncode}): {p.stderr[-300:]}")
    return parse_busybox_time(p.stderr), p.stderr


class ThroughputSamples:
    """MB/s per dd target and kind ("write", "read"), and the last error of
    dropping the page cache (kept when a pass fails)."""

    def __init__(self, targets: dict):
        self.mbs: dict[str, dict[str, list[float]]] = {
            k: {"write": [], "read": []} for k in targets}
        self.drop_error: str | None = None


def thin_throughput(tt: ThinTable, berth: Berth, dockerd: Dockerd | None, work: str,
                    reps: int) -> None:
    host_file = host_dd_file(tt, berth, work)
    targets = dd_targets(berth, dockerd, host_file)
    samples = ThroughputSamples(targets)
    try:
        berth.docker("volume", "create", "-d", "thin", "-o", "size=10G", "thinvol")
        if dockerd is not None:
            dockerd.docker("volume", "create", "ddvol")
        run_dd_passes(targets, reps, samples)
    except Exception as exc:
        samples.mbs = {}  # no partial samples under a "median of N" label
        tt.fail("thin throughput", exc)
    finally:
        remove_throughput_files(berth, dockerd, host_file)
    if samples.drop_error:
        tt.notes.append(f"dropping the page cache FAILED ({samples.drop_error}): the read "
                        f"figures may come from the cache")
    add_throughput_rows(tt, samples.mbs, reps, dockerd is not None)


def host_dd_file(tt: ThinTable, berth: Berth, work: str) -> str:
    """The host dd target under ``work``; a note when it is not on the berth root's
    filesystem."""
    host_dir = os.path.join(work, "hostio")
    os.makedirs(host_dir, exist_ok=True)
    if os.stat(host_dir).st_dev != os.stat(berth.dir).st_dev:
        tt.notes.append(f"the host dd folder {host_dir} is NOT on the filesystem of the "
                        f"berth root {berth.root}")
    return os.path.join(host_dir, "f")


def dd_targets(berth: Berth, dockerd: Dockerd | None, host_file: str) -> dict:
    """target name -> (run dd argv and return (seconds, stderr), file to write)."""
    targets = {
        "thin": (lambda dd: dd_in_container(berth, "thinvol", dd), "/d/f"),
        "host": (dd_on_host, host_file),
    }
    if dockerd is not None:
        targets["dockerd"] = (lambda dd: dd_in_container(dockerd, "ddvol", dd), "/d/f")
    return targets


def run_dd_passes(targets: dict, reps: int, samples: ThroughputSamples) -> None:
    names = list(targets)
    # Pass 0 is a warm-up (the first write into fresh space is much slower
    # on this VM's disk); the targets alternate order between passes.
    for rep in range(reps + 1):
        order = names if rep % 2 == 0 else list(reversed(names))
        for name in order:
            run, path = targets[name]
            w, r = dd_write_read_mbs(name, run, path, samples)
            if rep > 0:
                samples.mbs[name]["write"].append(w)
                samples.mbs[name]["read"].append(r)
            log(f"throughput {'warm-up' if rep == 0 else f'pass {rep}'} [{name}]: "
                f"write {w:.0f} MB/s, read {r:.0f} MB/s")


def dd_write_read_mbs(name: str, run, path: str,
                      samples: ThroughputSamples) -> tuple[float, float]:
    """(write MB/s, read MB/s) of 1 GiB at ``path``, the page cache dropped in between."""
    secs, err = run(dd_write_argv(path))
    check_dd(err, f"{name} write")
    write_mbs = DD_COUNT * MiB / secs / 1e6
    samples.drop_error = drop_caches() or samples.drop_error
    secs, err = run(dd_read_argv(path))
    check_dd(err, f"{name} read")
    return write_mbs, DD_COUNT * MiB / secs / 1e6


def remove_throughput_files(berth: Berth, dockerd: Dockerd | None, host_file: str) -> None:
    remove_volumes(berth, ["thinvol"])
    if dockerd is not None:
        remove_volumes(dockerd, ["ddvol"])
    try:
        os.remove(host_file)
    except OSError:
        pass


def add_throughput_rows(tt: ThinTable, mbs: dict[str, dict[str, list[float]]], reps: int,
                        with_dockerd: bool) -> None:
    def med(name: str, kind: str) -> float | None:
        return median_or_none(mbs.get(name, {}).get(kind))

    for kind, cmd in (("write", "`dd if=/dev/zero of=…/f bs=1M count=1024 conv=fsync`"),
                      ("read", "`dd if=…/f of=/dev/null bs=1M` after `sync; echo 3 > "
                               "/proc/sys/vm/drop_caches`")):
        t, h = med("thin", kind), med("host", kind)
        r = t / h if t and h else None
        tt.add(f"sequential {kind}, 1 GiB, {cmd}, median of {reps}: thin volume (10G, ext4) "
               f"in a container",
               fmt_mbs(t), f"host: same busybox dd into /tmp (same filesystem as the berth "
               f"root): {fmt_mbs(h)}", fmt_ratio(r) + " (thin/host)", "thin/host ≥ 0.85",
               None if r is None else r >= 0.85)
    if with_dockerd:
        for kind in ("write", "read"):
            d, h = med("dockerd", kind), med("host", kind)
            tt.add(f"for context: sequential {kind} in a dockerd local volume "
                   f"(a folder on the same filesystem), median of {reps}",
                   "—", f"dockerd: {fmt_mbs(d)}; host: {fmt_mbs(h)}",
                   fmt_ratio(d / h if d and h else None) + " (dockerd/host)")


# Every volume of the thin `system df -v` benchmark (5c) holds this: DF_DIRS
# folders of DF_FILES files of DF_FILE_BYTES bytes, plus one DF_BIG_BYTES file,
# all pseudo-random bytes from random.Random(DF_SEED). 1.4 MiB in 101 files,
# 111 entries with the folders.
DF_DIRS = 10
DF_FILES = 10
DF_FILE_BYTES = 4096
DF_BIG_BYTES = MiB
DF_SEED = 20261128
# In the container: file count, bytes, sha256 of the files in name order.
DF_CHECK = ("cd /d && L=$(find . -type f | sort) && echo \"$L\" | wc -l && "
            "echo \"$L\" | xargs cat | wc -c && echo \"$L\" | xargs cat | sha256sum")


def df_content_label() -> str:
    total = DF_DIRS * DF_FILES * DF_FILE_BYTES + DF_BIG_BYTES
    return (f"{total / MiB:.1f} MiB in {DF_DIRS * DF_FILES + 1} files "
            f"({DF_DIRS} folders × {DF_FILES} files × {DF_FILE_BYTES // 1024} KiB "
            f"+ 1 × {DF_BIG_BYTES // MiB} MiB)")


def build_df_template(parent: str) -> tuple[str, tuple[int, int, str]]:
    """The content folder under ``parent``, and (files, bytes, sha256) as
    DF_CHECK reports them."""
    root = os.path.join(parent, "dfcontent")
    rng = random.Random(DF_SEED)
    files: dict[str, bytes] = {}
    for i in range(DF_DIRS):
        for j in range(DF_FILES):
            files[f"./d{i:02d}/f{j:02d}"] = rng.randbytes(DF_FILE_BYTES)
    files["./big"] = rng.randbytes(DF_BIG_BYTES)
    os.makedirs(root)
    os.chmod(root, 0o755)
    sha = hashlib.sha256()
    for rel in sorted(files):
        path = os.path.join(root, rel[2:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(files[rel])
        sha.update(files[rel])
    return root, (len(files), sum(len(b) for b in files.values()), sha.hexdigest())


def df_content_in(engine: Engine, volume: str) -> tuple[int, int, str]:
    """(files, bytes, sha256) of the files in ``volume``, seen from a container."""
    out = engine.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/d", IMAGE,
                        "sh", "-c", DF_CHECK).stdout.split()
    if len(out) < 3:
        raise RuntimeError(f"{engine.name}: content check of {volume} printed {out!r}")
    return int(out[0]), int(out[1]), out[2]


def df_usage(payload: bytes, name: str) -> int | None:
    """UsageData.Size of volume ``name`` in a GET /system/df answer."""
    for v in json.loads(payload).get("Volumes") or []:
        if v.get("Name") == name:
            return (v.get("UsageData") or {}).get("Size")
    return None


class DfSamples:
    """What the thin `system df -v` benchmark measured (ms unless said), per
    engine name."""

    def __init__(self, engines: list[Engine]):
        self.created: dict[str, list[float]] = {}  # making the volumes, per op
        self.copied: list[float] = []  # dockerd: the content copied on the host, per volume
        self.cli: dict[str, list[float]] = {e.name: [] for e in engines}  # system df -v
        self.raw_api: dict[str, list[float]] = {e.name: [] for e in engines}  # GET /system/df
        self.removed: dict[str, list[float]] = {}  # DELETE /volumes/…, per op
        self.usage: dict[str, int | None] = {}  # UsageData.Size (bytes) of the last volume

    def clear(self) -> None:
        """Drop every sample: no partial samples under a "median of N" label."""
        for d in (self.created, self.removed, self.cli, self.raw_api, self.usage):
            d.clear()
        self.copied.clear()


def engines_of(berth: Berth, dockerd: Dockerd | None) -> list[Engine]:
    return [berth] + ([dockerd] if dockerd is not None else [])


def thin_df(tt: ThinTable, berth: Berth, dockerd: Dockerd | None, work: str, n: int,
            reps: int) -> None:
    engines = engines_of(berth, dockerd)
    names = [f"tv{i:04d}" for i in range(n)]
    samples = DfSamples(engines)
    try:
        measure_system_df(tt, berth, dockerd, work, names, reps, samples)
    except Exception as exc:
        samples.clear()
        tt.fail("system df with thin volumes", exc)
    finally:
        for e in engines:
            remove_volumes(e, names)
    add_df_rows(tt, samples, names, reps)
    note_df_usage(tt, samples.usage, names[-1])


def measure_system_df(tt: ThinTable, berth: Berth, dockerd: Dockerd | None, work: str,
                      names: list[str], reps: int, samples: DfSamples) -> None:
    """Make ``names`` on each engine, all holding the df content, check them, and
    time `system df -v`, GET /system/df and the removal of the volumes."""
    engines = engines_of(berth, dockerd)
    template, want = build_df_template(work)
    log(f"df content {template}: {want[0]} files, {want[1]} bytes, sha256 {want[2][:12]}…")
    samples.created["berth"] = make_berth_df_volumes(tt, berth, template, names)
    if dockerd is not None:
        samples.created["dockerd"] = make_dockerd_df_volumes(tt, dockerd, template, names,
                                                             samples.copied)
    os.sync()  # no writeback of the fill during the timing
    check_df_content(tt, engines, names[-1], want)
    check_df_volume_count_and_warm_up(tt, engines, len(names))
    time_system_df_cli(engines, reps, samples.cli)
    time_system_df_api(engines, names[-1], reps, samples)
    log_df_samples(samples, names)
    time_volume_removal(engines, names, samples.removed)


def make_berth_df_volumes(tt: ThinTable, berth: Berth, template: str,
                          names: list[str]) -> list[float]:
    """berth: one thin volume filled through a container, the others clones of it;
    the clone times."""
    n = len(names)
    fill_ms = fill_first_df_volume(berth, names[0], template)
    xs, grew = clone_df_volume(tt, berth, names)
    log(f"berth: filled {names[0]} in {fill_ms:.0f} ms (`docker run … cp -a`), cloned it "
        f"{n - 1} times: total {sum(xs) / 1000:.1f} s, median "
        f"{statistics.median(xs):.2f} ms; pool allocation grew "
        f"by {grew} KiB")
    tt.notes.append(f"berth's {n} df volumes: `{names[0]}` (thin, size=64M) was filled by "
                    f"`docker run … -v {names[0]}:/d -v <content>:/t:ro {IMAGE} cp -a /t/. "
                    f"/d/` in {fill_ms:.0f} ms; the {n - 1} clones of it grew the pool's "
                    f"allocation by {'?' if grew is None else f'{grew:.0f}'} KiB")
    return xs


def fill_first_df_volume(berth: Berth, volume: str, template: str) -> float:
    """Create ``volume`` (thin, size=64M) and copy the content in; ms of the copy."""
    berth.docker("volume", "create", "-d", "thin", "-o", "size=64M", volume)
    t0 = time.perf_counter()
    berth.docker("run", "--rm", "--network", "none", "-v", f"{volume}:/d",
                 "-v", f"{template}:/t:ro", IMAGE, "cp", "-a", "/t/.", "/d/")
    return (time.perf_counter() - t0) * 1000.0


def clone_df_volume(tt: ThinTable, berth: Berth,
                    names: list[str]) -> tuple[list[float], float | None]:
    """Clone names[0] into each of names[1:] over one connection: the clone times,
    and how much the pool's allocation grew (KiB; None when unknown)."""
    conn = UnixHTTPConnection(berth.sock)
    try:
        before = pool_allocated(conn)
        xs = [timed_api(conn, "berth", "POST", f"/berth/v1/volumes/{names[0]}/clone",
                        {"Target": v}, 201) for v in names[1:]]
        after = pool_allocated(conn)
        if conn.connects != 1:
            tt.notes.append(f"berth: cloning {len(names) - 1} volumes needed {conn.connects} "
                            f"connections")
    finally:
        conn.close()
    grew = None if before is None or after is None else (after - before) / 1024
    return xs, grew


def make_dockerd_df_volumes(tt: ThinTable, dockerd: Dockerd, template: str,
                            names: list[str], copied: list[float]) -> list[float]:
    """dockerd: local volumes, the content copied into each _data on the host; the
    create times. The copy times are appended to ``copied``."""
    n = len(names)
    conn = UnixHTTPConnection(dockerd.sock)
    try:
        xs = [timed_api(conn, "dockerd", "POST", f"/v{API}/volumes/create",
                        {"Name": v}, 201) for v in names]
        if conn.connects != 1:
            tt.notes.append(f"dockerd: creating {n} volumes needed {conn.connects} "
                            f"connections")
        copy_into_local_volumes(dockerd, conn, template, names, copied)
    finally:
        conn.close()
    log(f"created {n} volumes on dockerd: total {sum(xs) / 1000:.1f} s, median "
        f"{statistics.median(xs):.2f} ms; copied the content into them on the host: "
        f"total {sum(copied) / 1000:.1f} s, median {statistics.median(copied):.2f} ms")
    return xs


def copy_into_local_volumes(dockerd: Dockerd, conn: UnixHTTPConnection, template: str,
                            names: list[str], copied: list[float]) -> None:
    """Copy ``template`` into each volume's Mountpoint (which must lie under the
    dockerd root) on the host; the copy times are appended to ``copied``."""
    droot = os.path.realpath(dockerd.root)
    for v in names:
        mp = json.loads(api(conn, "dockerd", "GET", f"/v{API}/volumes/{v}"))
        mp = os.path.realpath(mp.get("Mountpoint") or "")
        if not mp.startswith(droot + "/"):
            raise RuntimeError(f"dockerd: volume {v} has Mountpoint {mp!r}, "
                               f"not under {droot}")
        t0 = time.perf_counter()
        shutil.copytree(template, mp, symlinks=True, dirs_exist_ok=True)
        copied.append((time.perf_counter() - t0) * 1000.0)


def check_df_content(tt: ThinTable, engines: list[Engine], volume: str,
                     want: tuple[int, int, str]) -> None:
    """Sanity: ``volume`` (a clone on berth, a volume on dockerd) holds the content."""
    for e in engines:
        got = df_content_in(e, volume)
        log(f"content check [{e.name}] {volume}: {got[0]} files, {got[1]} bytes, "
            f"sha256 {got[2][:12]}…")
        if got != want:
            raise RuntimeError(f"{e.name}: {volume} holds {got[0]} files, {got[1]} "
                               f"bytes, sha256 {got[2][:12]}…; the content folder has "
                               f"{want[0]} files, {want[1]} bytes, sha256 {want[2][:12]}…")
    tt.notes.append(f"check before the `system df` timing: `{volume}` held the same "
                    f"{want[0]} files, {want[1]} bytes (sha256 {want[2][:12]}…) on "
                    f"{' and '.join(e.name for e in engines)}")


def check_df_volume_count_and_warm_up(tt: ThinTable, engines: list[Engine], n: int) -> None:
    """Each engine lists the n tv… volumes; then one untimed `system df -v`."""
    for e in engines:
        out = e.docker("volume", "ls", "-q").stdout.split()
        got = sum(1 for v in out if v.startswith("tv"))
        if got != n:
            raise RuntimeError(f"{e.name}: docker volume ls shows {got} of {n} volumes")
        if len(out) != n:
            tt.notes.append(f"{e.name} held {len(out)} volumes during `system df -v`, "
                            f"not {n}")
        e.docker("system", "df", "-v")


def time_system_df_cli(engines: list[Engine], reps: int, cli: dict[str, list[float]]) -> None:
    """``reps`` timed `docker system df -v` per engine, engines alternating."""
    for i in range(reps):
        order = engines if i % 2 == 0 else list(reversed(engines))
        for e in order:
            cli[e.name].append(timed_cli(e, ["system", "df", "-v"]))


def time_system_df_api(engines: list[Engine], volume: str, reps: int,
                       samples: DfSamples) -> None:
    """Per engine over one connection: UsageData.Size of ``volume`` from one
    GET /system/df, then ``reps`` timed GET /system/df."""
    for e in engines:
        conn = UnixHTTPConnection(e.sock)
        try:
            samples.usage[e.name] = df_usage(api(conn, e.name, "GET", f"/v{API}/system/df"),
                                             volume)
            for _ in range(reps):
                samples.raw_api[e.name].append(
                    timed_api(conn, e.name, "GET", f"/v{API}/system/df"))
        finally:
            conn.close()


def log_df_samples(samples: DfSamples, names: list[str]) -> None:
    n = len(names)
    for name, xs in samples.cli.items():
        log(f"`docker system df -v`, {n} thin/local volumes with content [{name}] ms: "
            + " ".join(f"{x:.1f}" for x in xs))
    for name, xs in samples.raw_api.items():
        log(f"GET /system/df, {n} volumes [{name}] ms: " + " ".join(f"{x:.2f}" for x in xs))
    log(f"UsageData.Size of {names[-1]}: {samples.usage}")


def time_volume_removal(engines: list[Engine], names: list[str],
                        removed: dict[str, list[float]]) -> None:
    """Per engine over one connection: the time of DELETE /volumes/… for each name."""
    for e in engines:
        conn = UnixHTTPConnection(e.sock)
        try:
            removed[e.name] = [timed_api(conn, e.name, "DELETE", f"/v{API}/volumes/{v}",
                                         None, 204) for v in names]
        finally:
            conn.close()


def add_df_rows(tt: ThinTable, samples: DfSamples, names: list[str], reps: int) -> None:
    n = len(names)

    def medians(d: dict[str, list[float]]) -> tuple[float | None, float | None]:
        return median_or_none(d.get("berth")), median_or_none(d.get("dockerd"))

    b, d = medians(samples.cli)
    r = b / d if b is not None and d else None
    tt.add(f"`docker system df -v` with {n} volumes, each holding the same "
           f"{df_content_label()} (berth: thin, size=64M, clones of one filled volume; "
           f"dockerd: local, filled on the host), median of {reps}", fmt_ms(b),
           f"dockerd: {fmt_ms(d)}", fmt_ratio(r), "berth ≤ 0.1× dockerd",
           None if r is None else r <= 0.1)
    b, d = medians(samples.raw_api)
    tt.add(f"for context: `GET /v{API}/system/df` alone (no CLI), same {n} volumes, "
           f"keep-alive, median of {reps}", fmt_ms(b), f"dockerd: {fmt_ms(d)}",
           fmt_ratio(b / d if b is not None and d else None))
    b, d = medians(samples.created)
    cp = (f"; then the content copied on the host, median "
          f"{fmt_ms(statistics.median(samples.copied))} per volume, not counted"
          if samples.copied else "")
    tt.add(f"for context: making the volumes, per op, median (berth: "
           f"`POST /berth/v1/volumes/{names[0]}/clone` ×{n - 1}; dockerd: "
           f"`POST /volumes/create` ×{n}{cp})", fmt_ms(b), f"dockerd: {fmt_ms(d)}",
           fmt_ratio(b / d if b is not None and d else None))
    b, d = medians(samples.removed)
    tt.add(f"for context: API volume remove ×{n}, per op, the volumes holding the content "
           f"(berth: thin size=64M; dockerd: local), median", fmt_ms(b), f"dockerd: {fmt_ms(d)}",
           fmt_ratio(b / d if b is not None and d else None))


def note_df_usage(tt: ThinTable, usage: dict[str, int | None], volume: str) -> None:
    if not usage:
        return
    tt.notes.append(
        f"`system df` UsageData.Size of `{volume}`: berth "
        f"{usage.get('berth')} bytes, dockerd {usage.get('dockerd', 'n/a')} bytes, for "
        f"{df_content_label()}. They mean different things: berth's thin figure is the "
        f"allocated bytes of the volume's image file (st_blocks, O(1): ext4 metadata "
        f"included, and blocks a clone shares are counted in every volume); dockerd's is "
        f"the sum of the file sizes it finds by walking the folder")


def bench_thin(tt: ThinTable, berth: Berth, dockerd: Dockerd | None, work: str,
               args: argparse.Namespace) -> None:
    parts = (args.thin_only,) if args.thin_only else ("snapshot", "throughput", "df")
    if "snapshot" in parts:
        log("thin section: snapshot and clone")
        thin_snapshot_clone(tt, berth, dockerd, args.snap_reps, args.tar_reps)
    if "throughput" in parts:
        log("thin section: throughput")
        thin_throughput(tt, berth, dockerd, work, args.io_reps)
    if "df" in parts:
        log("thin section: system df")
        thin_df(tt, berth, dockerd, work, args.thin_volumes, args.thin_df_reps)


# ---------------------------------------------------------------------------
# Volume backup and restore (--backup-only)
# ---------------------------------------------------------------------------

# The backed-up volume holds BK_FILES files of BK_FILE_BYTES pseudo-random
# bytes from random.Random(BK_SEED) (1 GiB, under data/) plus the df content
# (under dfcontent/).
BK_FILES = 64
BK_FILE_BYTES = 16 * MiB
BK_BYTES = BK_FILES * BK_FILE_BYTES  # MB/s is this over the time
BK_SEED = 20261129
BK_VOL = "bkvol"
BK_DST = "bkdst"
# (engine, operation) -> the archive it writes or reads, in the backup folder
BK_ARCHIVE = {("berth", "export"): "berth-backup.tar",
              ("berth", "tar_backup"): "berth-tar-backup.tar",
              ("dockerd", "tar_backup"): "docker-backup.tar",
              ("berth", "import"): "berth-backup.tar",
              ("dockerd", "tar_restore"): "docker-backup.tar"}
BK_BACKUPS = (("berth", "export"), ("dockerd", "tar_backup"), ("berth", "tar_backup"))
BK_RESTORES = (("berth", "import"), ("dockerd", "tar_restore"))
BK_LABEL = {("berth", "export"): "berth `volume export`",
            ("berth", "tar_backup"): "`docker run … tar cf` on berth",
            ("dockerd", "tar_backup"): "`docker run … tar cf` on dockerd",
            ("berth", "import"): "berth `volume import`",
            ("dockerd", "tar_restore"): "`docker run … tar xf` on dockerd"}


class BackupTable:
    """measurement | berth | dockerd | ratio, and notes."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []
        self.notes: list[str] = []
        self.failed = 0

    def add(self, what: str, berth: str, dockerd: str, ratio_s: str) -> None:
        self.rows.append((what, berth, dockerd, ratio_s))

    def fail(self, part: str, exc: BaseException) -> None:
        msg = f"{part} FAILED: {exc}"
        self.failed += 1
        loud(msg)
        self.notes.append(msg.splitlines()[0][:300])

    def table(self) -> str:
        out = ["| measurement | berth | dockerd | berth/dockerd |", "|---|---:|---:|---:|"]
        for row in self.rows:
            out.append("| " + " | ".join(row) + " |")
        return "\n".join(out)


class BackupRun:
    """The backup section's state: its folders, what every volume and archive must
    hold, and per (engine, operation) key the seconds of each timed run and of the
    `sync` right after it."""

    def __init__(self, berth: Berth, dockerd: Dockerd | None, work: str):
        self.berth = berth
        self.dockerd = dockerd
        self.dir = os.path.join(work, "backup")  # the archives; /backup in containers
        self.template = os.path.join(work, "bktemplate")
        self.want: dict[str, str] = {}  # tree_listing of the content
        self.secs: dict[tuple[str, str], list[float]] = {}
        self.sync_after: dict[tuple[str, str], list[float]] = {}
        self.bad: set[tuple[str, str]] = set()  # failed a check: not timed
        self.drops: list[str | None] = []  # drop_caches() results
        self.sizes: dict[str, int] = {}  # archive name -> bytes

    def engine(self, who: str) -> Engine:
        return self.berth if who == "berth" else self.dockerd

    def keys(self, keys: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
        """``keys`` whose engine runs and that passed their check."""
        return [k for k in keys if self.engine(k[0]) is not None and k not in self.bad]

    def archive(self, key: tuple[str, str]) -> str:
        return os.path.join(self.dir, BK_ARCHIVE[key])


def file_sha256(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            sha.update(chunk)
    return sha.hexdigest()


def tree_listing(root: str) -> dict[str, str]:
    """Every entry below ``root`` by relative path: "dir" for a folder, "link"
    for a symlink, the sha256 of a file."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            key = os.path.normpath(os.path.join(rel, name))
            if os.path.islink(path):
                out[key] = "link"
            else:
                out[key] = "dir" if name in dirs else file_sha256(path)
    return out


def listing_diff(got: list[str], want: list[str]) -> str:
    g, w = set(got), set(want)
    dup = len(got) - len(g)
    return (f"{len(got)} entries, want {len(want)}; missing {sorted(w - g)[:5]}, "
            f"extra {sorted(g - w)[:5]}{f', {dup} duplicates' if dup else ''}")


def build_backup_template(root: str) -> dict[str, str]:
    """The content folder ``root``: the df content under dfcontent/ and BK_FILES
    files of BK_FILE_BYTES pseudo-random bytes under data/; its tree_listing."""
    build_df_template(root)
    data = os.path.join(root, "data")
    os.makedirs(data)
    rng = random.Random(BK_SEED)
    for i in range(BK_FILES):
        with open(os.path.join(data, f"f{i:02d}"), "wb") as f:
            f.write(rng.randbytes(BK_FILE_BYTES))
    os.chmod(root, 0o755)
    return tree_listing(root)


def bk_content_label() -> str:
    return (f"{BK_BYTES / GiB:.0f} GiB in {BK_FILES} files of {BK_FILE_BYTES // MiB} MiB "
            f"+ {df_content_label()}")


def volume_mountpoint(engine: Engine, name: str) -> str:
    """The host path of local volume ``name`` (inspected by the API); it must lie
    under the engine's root."""
    conn = UnixHTTPConnection(engine.sock)
    try:
        info = json.loads(api(conn, engine.name, "GET", f"/v{API}/volumes/{name}"))
    finally:
        conn.close()
    mp = os.path.realpath(info.get("Mountpoint") or "")
    root = os.path.realpath(engine.root)
    if not mp.startswith(root + "/"):
        raise RuntimeError(f"{engine.name}: volume {name} has Mountpoint {mp!r}, "
                           f"not under {root}")
    return mp


def berth_cli(berth: Berth, *args: str) -> None:
    """``berth -H <berth's socket> args…`` with the binary the daemon runs."""
    argv = [berth.bin, "-H", berth.host, *args]
    p = subprocess.run(argv, env=docker_env(berth.config), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"berth: `{' '.join(args)}` failed with exit {p.returncode}\n"
                           f"stdout: {p.stdout[-500:]}\nstderr: {p.stderr[-1000:]}\n"
                           f"--- daemon log ---\n{tail(berth.log)}")


def check_berth_archive_cli(berth: Berth) -> None:
    """Fails early when the binary has no `volume export`/`volume import`."""
    for verb in ("export", "import"):
        p = subprocess.run([berth.bin, "volume", verb, "--help"], capture_output=True,
                           text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"{berth.bin} has no `volume {verb}` (built before "
                               f"export/import? rebuild it): {p.stderr.strip()[:200]}")


def prepare_backup_volumes(bt: BackupTable, st: BackupRun) -> None:
    """The content folder, then `bkvol` on each engine with the content copied into
    its Mountpoint on the host; the content folder is removed afterwards."""
    st.want = build_backup_template(st.template)
    log(f"backup content {st.template}: {len(st.want)} entries, {bk_content_label()}")
    os.makedirs(st.dir)
    for e in engines_of(st.berth, st.dockerd):
        e.docker("volume", "create", BK_VOL)
        mp = volume_mountpoint(e, BK_VOL)
        t0 = time.perf_counter()
        shutil.copytree(st.template, mp, symlinks=True, dirs_exist_ok=True)
        log(f"copied the backup content into {e.name}'s {BK_VOL} ({mp}) in "
            f"{time.perf_counter() - t0:.1f} s")
        if os.stat(mp).st_dev != os.stat(st.dir).st_dev:
            bt.notes.append(f"{e.name}'s {BK_VOL} ({mp}) is NOT on the filesystem of the "
                            f"archive folder {st.dir}")
    shutil.rmtree(st.template)
    os.sync()


def run_backup(st: BackupRun, key: tuple[str, str]) -> None:
    who, op = key
    if op == "export":
        berth_cli(st.berth, "volume", "export", BK_VOL, "-o", st.archive(key))
        return
    st.engine(who).docker("run", "--rm", "--network", "none", "-v", f"{BK_VOL}:/data",
                          "-v", f"{st.dir}:/backup", IMAGE, "tar", "cf",
                          f"/backup/{BK_ARCHIVE[key]}", "-C", "/data", ".")


def run_restore(st: BackupRun, key: tuple[str, str]) -> None:
    if key[1] == "import":
        berth_cli(st.berth, "volume", "import", BK_DST, st.archive(key))
        return
    st.engine(key[0]).docker("run", "--rm", "--network", "none", "-v", f"{BK_DST}:/data",
                             "-v", f"{st.dir}:/backup", IMAGE, "tar", "xf",
                             f"/backup/{BK_ARCHIVE[key]}", "-C", "/data")


def timed_s(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_backup(st: BackupRun, key: tuple[str, str]) -> tuple[float, float]:
    """(seconds, seconds of a `sync` right after) of one backup; before it, untimed:
    the old archive removed, sync and the page cache dropped."""
    try:
        os.remove(st.archive(key))
    except FileNotFoundError:
        pass
    st.drops.append(drop_caches())  # syncs first
    secs = timed_s(lambda: run_backup(st, key))
    return secs, timed_s(os.sync)


def time_restore(st: BackupRun, key: tuple[str, str],
                 check: bool = False) -> tuple[float, float, str | None]:
    """(seconds, seconds of a `sync` right after, what the check found wrong) of one
    restore into a new BK_DST; the create before and the remove after are untimed."""
    e = st.engine(key[0])
    e.docker("volume", "create", BK_DST)
    os.sync()
    secs = timed_s(lambda: run_restore(st, key))
    sync_s = timed_s(os.sync)
    problem = restored_problem(st, e) if check else None
    e.docker("volume", "rm", BK_DST)
    return secs, sync_s, problem


def archive_names(path: str) -> list[str]:
    """The entry names `tar -tf` lists, without "./" and a trailing "/", the root
    entry left out; sorted."""
    p = subprocess.run(["tar", "-tf", path], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"tar -tf {path} failed ({p.returncode}): {p.stderr[-300:]}")
    names = []
    for line in p.stdout.splitlines():
        name = (line[2:] if line.startswith("./") else line).rstrip("/")
        if name not in ("", "."):
            names.append(name)
    return sorted(names)


def restored_problem(st: BackupRun, e: Engine) -> str | None:
    """What BK_DST on ``e`` holds that differs from the content (entries, and the
    sha256 of every file, read on the host from its Mountpoint); None when equal."""
    got = tree_listing(volume_mountpoint(e, BK_DST))
    if got == st.want:
        return None
    if set(got) != set(st.want):
        return listing_diff(sorted(got), sorted(st.want))
    diff = sorted(k for k in got if got[k] != st.want[k])
    return f"{len(diff)} entries differ (sha256 or type): {diff[:5]}"


def warm_up_and_check(bt: BackupTable, st: BackupRun) -> None:
    """One untimed run of every backup and restore; a backup whose archive does not
    list the content's names (`tar -tf`), or a restore whose volume does not hold
    the same bytes, is marked bad (n/a and a NOTE) and not timed."""
    want = sorted(st.want)
    for key in st.keys(BK_BACKUPS):
        time_backup(st, key)
        st.sizes[BK_ARCHIVE[key]] = os.path.getsize(st.archive(key))
        names = archive_names(st.archive(key))
        if names != want:
            mark_bad(bt, st, key, f"{BK_ARCHIVE[key]} does not list the content's names: "
                                  f"{listing_diff(names, want)}")
    for key in st.keys(BK_RESTORES):
        problem = time_restore(st, key, check=True)[2]
        if problem:
            mark_bad(bt, st, key, f"the restored {BK_DST} does not hold the content: "
                                  f"{problem}")
    note_backup_checks(bt, st, len(want))


def mark_bad(bt: BackupTable, st: BackupRun, key: tuple[str, str], why: str) -> None:
    st.bad.add(key)
    bt.fail(f"check of {BK_LABEL[key]}", RuntimeError(why))


def note_backup_checks(bt: BackupTable, st: BackupRun, n: int) -> None:
    good = st.keys(BK_BACKUPS)
    if good:
        bt.notes.append(f"check before the timing: the archives of "
                        f"{', '.join(BK_LABEL[k] for k in good)} list the same {n} names "
                        f"(`tar -tf`, \"./\" and trailing \"/\" ignored) as the content")
    good = st.keys(BK_RESTORES)
    if good:
        bt.notes.append(f"check before the timing: after {', '.join(BK_LABEL[k] for k in good)}"
                        f", `{BK_DST}` held the same {n} entries, every file with the same "
                        f"sha256 (the {BK_FILES} files of {BK_FILE_BYTES // MiB} MiB "
                        f"included), read on the host from its Mountpoint")


def time_backup_ops(st: BackupRun, keys: list[tuple[str, str]], reps: int, fn) -> None:
    """``reps`` timed runs of each key by ``fn`` (time_backup or time_restore),
    the order reversed every other round."""
    for i in range(reps):
        order = keys if i % 2 == 0 else list(reversed(keys))
        for key in order:
            secs, sync_s = fn(st, key)[:2]
            st.secs.setdefault(key, []).append(secs)
            st.sync_after.setdefault(key, []).append(sync_s)
            log(f"{BK_LABEL[key]} run {i + 1}: {secs:.2f} s "
                f"({BK_BYTES / secs / 1e6:.0f} MB/s), sync after {sync_s:.2f} s")


def bench_backup(bt: BackupTable, berth: Berth, dockerd: Dockerd | None, work: str,
                 reps: int) -> None:
    st = BackupRun(berth, dockerd, work)
    try:
        check_berth_archive_cli(berth)
        prepare_backup_volumes(bt, st)
        warm_up_and_check(bt, st)
        time_backup_ops(st, st.keys(BK_BACKUPS), reps, time_backup)
        time_backup_ops(st, st.keys(BK_RESTORES), reps, time_restore)
    except Exception as exc:
        st.secs.clear()  # no partial samples under a "median of N" label
        bt.fail("volume backup and restore", exc)
    finally:
        for e in engines_of(berth, dockerd):
            remove_volumes(e, [BK_VOL, BK_DST])
        for path in (st.dir, st.template):
            shutil.rmtree(path, ignore_errors=True)
    add_backup_rows(bt, st, reps)
    note_backup_runs(bt, st)


def fmt_backup(secs: float | None) -> str:
    return "n/a" if secs is None else f"{secs:.2f} s ({BK_BYTES / secs / 1e6:.0f} MB/s)"


def add_backup_rows(bt: BackupTable, st: BackupRun, reps: int) -> None:
    tar_cf = (f"`docker run --rm --network none -v {BK_VOL}:/data -v <work>/backup:/backup "
              f"{IMAGE} tar cf /backup/docker-backup.tar -C /data .`")
    rows = (
        (f"backup of local volume `{BK_VOL}` ({bk_content_label()}) into a tar file, page "
         f"cache dropped before each run, median of {reps}. berth: `berth volume export "
         f"{BK_VOL} -o <work>/backup/berth-backup.tar`; dockerd: {tar_cf}",
         ("berth", "export"), ("dockerd", "tar_backup")),
        (f"restore of that archive into a new local volume `{BK_DST}` (its `volume create` "
         f"untimed on both), median of {reps}. berth: `berth volume import {BK_DST} "
         f"<work>/backup/berth-backup.tar`; dockerd: `docker run --rm --network none -v "
         f"{BK_DST}:/data -v <work>/backup:/backup {IMAGE} tar xf /backup/docker-backup.tar "
         f"-C /data`", ("berth", "import"), ("dockerd", "tar_restore")),
        (f"for context: the same `docker run … tar cf` backup, berth running the container, "
         f"median of {reps}", ("berth", "tar_backup"), ("dockerd", "tar_backup")),
    )
    for what, bkey, dkey in rows:
        b, d = median_or_none(st.secs.get(bkey)), median_or_none(st.secs.get(dkey))
        bt.add(what, fmt_backup(b), fmt_backup(d),
               fmt_ratio(b / d if b is not None and d else None))


def note_backup_runs(bt: BackupTable, st: BackupRun) -> None:
    failed = [d for d in st.drops if d]
    if st.drops and not failed:
        bt.notes.append(f"`sync; echo 3 > /proc/sys/vm/drop_caches` worked before each of "
                        f"the {len(st.drops)} backups (warm-ups included): they read "
                        f"`{BK_VOL}` from disk")
    elif failed:
        bt.notes.append(f"dropping the page cache FAILED {len(failed)} of {len(st.drops)} "
                        f"times ({failed[-1]}): the backups may read from the cache")
    bt.notes.append(f"MB/s = {BK_BYTES} bytes (the {BK_FILES} large files) / time. Each "
                    f"timing is the whole CLI process, after a 1-run warm-up; `sync` before "
                    f"each run. Restores do not drop the page cache (the archive, just "
                    f"written, may be read from it)")
    if st.sync_after:
        meds = ", ".join(f"{BK_LABEL[k]} {statistics.median(xs):.2f} s"
                         for k, xs in st.sync_after.items())
        bt.notes.append(f"not in the timings: a `sync` right after each run took a median "
                        f"of {meds}. berth's CLI fsyncs the exported file before renaming "
                        f"it into place; busybox tar does not fsync")
    if st.sizes:
        bt.notes.append("archive sizes: " + ", ".join(f"{k} {v} bytes"
                                                      for k, v in st.sizes.items()))


# ---------------------------------------------------------------------------
# Daemon resources under load (--resources)
# ---------------------------------------------------------------------------

RES_VOL_OPS = 10_000    # volume API operations per engine (× --resources-scale)
RES_VOL_BLOCKS = 10     # samples during the volume phase
RES_RUNS = 500          # container runs per engine (× --resources-scale)
RES_RUN_BLOCKS = 5      # samples during the run phase
RES_WINDOW = 100        # volumes the mix keeps alive
RES_SETTLE = 5.0        # seconds of idleness before the two idle samples
RES_QUIET = 0.2         # seconds the client is idle before every sample
RES_LABEL = "bench.resources"
RES_PREFIX = "rv"
RES_RUN_VOLUME = "resvol"
KiB_PER_MiB = 1024


def proc_table() -> dict[int, dict]:
    """Every process: {pid: {ppid, state, comm, argv}}; vanished ones are skipped."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        # comm may hold spaces and parentheses: it ends at the LAST ')'
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        table[pid] = {"ppid": int(rest[1]), "state": rest[0], "comm": comm, "argv": argv}
    return table


class ProcUsage:
    """One process at one moment: VmRSS, VmHWM (kB), open fds, threads."""

    def __init__(self, label: str, pid: int):
        self.label = label
        self.pid = pid
        self.rss_kb = self.hwm_kb = self.fds = self.threads = 0
        self.gone = False
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    key, _, val = line.partition(":")
                    if key == "VmRSS":
                        self.rss_kb = int(val.split()[0])
                    elif key == "VmHWM":
                        self.hwm_kb = int(val.split()[0])
                    elif key == "Threads":
                        self.threads = int(val.split()[0])
            self.fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, ValueError):
            self.gone = True


class ResSample:
    """One engine at one phase: its daemon process(es), shims and zombie children."""

    def __init__(self, phase: str, engine: str, procs: list[ProcUsage], shims: list[int],
                 shim_rss_kb: int, zombies: int, ops: int):
        self.phase, self.engine, self.procs = phase, engine, procs
        self.shims, self.shim_rss_kb, self.zombies, self.ops = shims, shim_rss_kb, zombies, ops

    def total(self, attr: str) -> int:
        return sum(getattr(p, attr) for p in self.procs)


def daemon_pids(engine: Engine, table: dict[int, dict]) -> list[tuple[str, int]]:
    """(label, pid) of the processes that make up the engine's daemon: the
    `berth daemon`; dockerd and the containerd it started (its child)."""
    pids = [(engine.name if engine.name != "berth" else "berth daemon", engine.proc.pid)]
    if isinstance(engine, Dockerd):
        kids = [pid for pid, p in table.items()
                if p["ppid"] == engine.proc.pid and p["comm"] == "containerd"]
        if len(kids) != 1:
            raise RuntimeError(f"dockerd (pid {engine.proc.pid}) has {len(kids)} containerd "
                               f"children, want 1 (a system containerd in use?)")
        pids.append(("containerd", kids[0]))
    return pids


def shim_pids(engine: Engine, table: dict[int, dict], skip: set[int]) -> list[int]:
    """berth: `berth shim …` processes naming the engine's folder; dockerd:
    containerd-shim* processes naming it."""
    out = []
    for pid, p in table.items():
        if pid in skip or not any(engine.dir in a for a in p["argv"]):
            continue
        if isinstance(engine, Berth):
            if len(p["argv"]) > 1 and p["argv"][1] == "shim":
                out.append(pid)
        elif p["comm"].startswith("containerd-shim"):
            out.append(pid)
    return sorted(out)


def sample_engine(engine: Engine, phase: str, ops: int) -> ResSample:
    table = proc_table()
    pids = daemon_pids(engine, table)
    procs = [ProcUsage(label, pid) for label, pid in pids]
    for p in procs:
        if p.gone:
            raise RuntimeError(f"{engine.name}: {p.label} (pid {p.pid}) is gone at '{phase}'")
    main = {pid for _, pid in pids}
    shims = shim_pids(engine, table, main)
    shim_rss = sum(ProcUsage("shim", pid).rss_kb for pid in shims)
    zombies = sum(1 for p in table.values() if p["ppid"] in main and p["state"] == "Z")
    s = ResSample(phase, engine.name, procs, shims, shim_rss, zombies, ops)
    log(f"resources [{engine.name}] {phase}: " + "; ".join(
        f"{p.label} pid {p.pid} rss {p.rss_kb} kB hwm {p.hwm_kb} kB fds {p.fds} "
        f"threads {p.threads}" for p in procs)
        + f"; shims {len(shims)} ({shim_rss} kB); zombie children {zombies}")
    return s


class ResClient:
    """HTTP over the engine's socket: one connection per request
    (``per_request``) or one keep-alive connection; counts both."""

    def __init__(self, engine: Engine, per_request: bool):
        self.engine = engine
        self.per_request = per_request
        self.conn: UnixHTTPConnection | None = None
        self.connects = 0
        self.requests = 0

    def call(self, method: str, path: str, body=None, want: int = 200) -> bytes:
        if self.conn is None:
            self.conn = UnixHTTPConnection(self.engine.sock)
        try:
            status, payload = call(self.conn, method, path, body)
        finally:
            self.requests += 1
            if self.per_request:
                self.close()
        if status != want:
            raise RuntimeError(f"{self.engine.name}: {method} {path} -> {status} (want {want}): "
                               f"{payload[:300]!r}\n--- daemon log ---\n{tail(self.engine.log)}")
        return payload

    def close(self) -> None:
        if self.conn is not None:
            self.connects += self.conn.connects
            self.conn.close()
            self.conn = None

    def total_connects(self) -> int:
        return self.connects + (self.conn.connects if self.conn is not None else 0)


def res_volume_ops(window: int):
    """The volume mix, endless: for step s, create rv<s> with two labels,
    inspect it, list (plain on even steps, filtered by label on odd ones) and,
    once ``window`` volumes are alive, remove rv<s-window>."""
    flt = urllib.parse.quote(json.dumps({"label": [f"{RES_LABEL}=1"]}))
    s = 0
    while True:
        name = f"{RES_PREFIX}{s:05d}"
        yield ("create", name, "POST", f"/v{API}/volumes/create",
               {"Name": name, "Labels": {RES_LABEL: "1", "bench.step": str(s)}}, 201)
        yield ("inspect", name, "GET", f"/v{API}/volumes/{name}", None, 200)
        yield ("list", name, "GET",
               f"/v{API}/volumes" + ("" if s % 2 == 0 else f"?filters={flt}"), None, 200)
        if s >= window:
            old = f"{RES_PREFIX}{s - window:05d}"
            yield ("remove", old, "DELETE", f"/v{API}/volumes/{old}", None, 204)
        s += 1


class ResWork:
    """One engine's share of the workload: its client, the op generator, the
    live volumes, op counts and times."""

    def __init__(self, engine: Engine, per_request: bool):
        self.engine = engine
        self.client = ResClient(engine, per_request)
        self.ops = res_volume_ops(RES_WINDOW)
        self.live: set[str] = set()
        self.counts = {"create": 0, "inspect": 0, "list": 0, "remove": 0}
        self.vol_ms: list[float] = []
        self.run_ms: list[float] = []
        self.cid: str | None = None  # a container not yet removed

    def volume_ops(self, n: int) -> None:
        for _ in range(n):
            kind, name, method, path, body, want = next(self.ops)
            t0 = time.perf_counter()
            payload = self.client.call(method, path, body, want)
            self.vol_ms.append((time.perf_counter() - t0) * 1000.0)
            self.counts[kind] += 1
            self.check(kind, name, payload)

    def check(self, kind: str, name: str, payload: bytes) -> None:
        """The two engines must have done the same work."""
        who = self.engine.name
        if kind == "create":
            self.live.add(name)
        elif kind == "remove":
            self.live.discard(name)
        elif kind == "inspect":
            labels = json.loads(payload).get("Labels") or {}
            if labels.get(RES_LABEL) != "1":
                raise RuntimeError(f"{who}: {name} has labels {labels}")
        else:
            vols = json.loads(payload).get("Volumes") or []
            got = {v["Name"] for v in vols if v["Name"].startswith(RES_PREFIX)}
            if got != self.live:
                raise RuntimeError(f"{who}: list shows {len(got)} bench volumes, "
                                   f"{len(self.live)} are alive")

    def drain(self) -> None:
        """Remove the volumes the mix left alive (not counted as ops)."""
        for name in sorted(self.live):
            self.client.call("DELETE", f"/v{API}/volumes/{name}", None, 204)
        self.live.clear()

    def runs(self, n: int) -> None:
        """``docker run --rm --network none -v resvol:/d benchimg:1 true`` as
        its API calls: create, start, wait, remove."""
        c = self.client
        body = {"Image": IMAGE, "Cmd": ["true"],
                "HostConfig": {"Binds": [f"{RES_RUN_VOLUME}:/d"], "NetworkMode": "none"}}
        for _ in range(n):
            t0 = time.perf_counter()
            cid = json.loads(c.call("POST", f"/v{API}/containers/create", body, 201))["Id"]
            self.cid = cid
            c.call("POST", f"/v{API}/containers/{cid}/start", None, 204)
            code = json.loads(c.call("POST", f"/v{API}/containers/{cid}/wait", None, 200))
            c.call("DELETE", f"/v{API}/containers/{cid}", None, 204)
            self.cid = None
            self.run_ms.append((time.perf_counter() - t0) * 1000.0)
            if code.get("StatusCode") != 0:
                raise RuntimeError(f"{self.engine.name}: `true` exited with {code}")


class ResReport:
    def __init__(self):
        self.samples: list[ResSample] = []
        self.notes: list[str] = []
        self.work: dict[str, ResWork] = {}
        self.failed = False
        self.header: list[str] = []


def res_sample_all(rep: ResReport, engines: list[Engine], phase: str, ops: int) -> None:
    time.sleep(RES_QUIET)
    for e in engines:
        rep.samples.append(sample_engine(e, phase, ops))


def bench_resources(rep: ResReport, engines: list[Engine], scale: float,
                    per_request: bool) -> None:
    """Idle, then volume ops and container runs in blocks (engines taking
    turns block by block, each sampled right after its block), then idle."""
    vol_ops = max(1, round(RES_VOL_OPS * scale))
    runs = max(1, round(RES_RUNS * scale))
    vol_step = max(1, vol_ops // RES_VOL_BLOCKS)
    run_step = max(1, runs // RES_RUN_BLOCKS)
    for e in engines:
        rep.work[e.name] = ResWork(e, per_request)
    try:
        log(f"resources: {RES_SETTLE:.0f} s settle, then the idle sample")
        time.sleep(RES_SETTLE)
        res_sample_all(rep, engines, "idle (start)", 0)
        done = 0
        while done < vol_ops:
            n = min(vol_step, vol_ops - done)
            for e in engines:
                rep.work[e.name].volume_ops(n)
                time.sleep(RES_QUIET)
                rep.samples.append(sample_engine(e, f"after {done + n:,} volume ops", done + n))
            done += n
        for e in engines:
            rep.work[e.name].drain()
        done = 0
        while done < runs:
            n = min(run_step, runs - done)
            for e in engines:
                rep.work[e.name].runs(n)
                time.sleep(RES_QUIET)
                rep.samples.append(sample_engine(e, f"after {done + n} runs", done + n))
            done += n
        for e in engines:
            rep.work[e.name].client.call("DELETE", f"/v{API}/volumes/{RES_RUN_VOLUME}", None, 204)
            rep.work[e.name].client.close()
        log(f"resources: {RES_SETTLE:.0f} s settle, then the idle sample")
        time.sleep(RES_SETTLE)
        res_sample_all(rep, engines, f"idle (end, after {RES_SETTLE:.0f} s)", 0)
    except Exception as exc:
        rep.failed = True
        msg = f"resources section FAILED: {exc}"
        loud(msg)
        rep.notes.append(msg.splitlines()[0][:300])
    finally:
        for e in engines:
            w = rep.work[e.name]
            w.client.close()
            try:  # leave nothing behind, also after a failure
                if w.cid:
                    conn = UnixHTTPConnection(e.sock)
                    try:
                        call(conn, "DELETE", f"/v{API}/containers/{w.cid}?force=1")
                    finally:
                        conn.close()
                remove_volumes(e, sorted(w.live) + [RES_RUN_VOLUME])
            except Exception as exc:
                log(f"WARNING: {e.name}: removing the resources volumes failed: {exc!r}")
    for e in engines:
        w = rep.work[e.name]
        rep.notes.append(
            f"{e.name}: {sum(w.counts.values()):,} volume ops "
            f"({', '.join(f'{k} {v:,}' for k, v in w.counts.items())}), "
            f"{len(w.run_ms)} runs; {w.client.requests:,} requests over "
            f"{w.client.total_connects():,} connection(s); volume op median "
            f"{fmt_ms(median_or_none(w.vol_ms))} (total {sum(w.vol_ms) / 1000:.1f} s), "
            f"run (create+start+wait+remove) median {fmt_ms(median_or_none(w.run_ms))} "
            f"(total {sum(w.run_ms) / 1000:.1f} s)")


def mib(kb: int) -> str:
    return f"{kb / KiB_PER_MiB:.1f}"


def res_cell(s: ResSample, attr: str, fmt=str) -> str:
    """The total, and each process in parentheses when there are several."""
    total = fmt(s.total(attr))
    if len(s.procs) == 1:
        return total
    return f"{total} ({' + '.join(fmt(getattr(p, attr)) for p in s.procs)})"


def res_engine_label(s: ResSample) -> str:
    return " + ".join(p.label for p in s.procs)


def res_table(rep: ResReport) -> str:
    out = ["| phase | engine | RSS MiB | peak (VmHWM) MiB | fds | threads | shims (their RSS MiB) "
           "| zombie children |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in rep.samples:
        out.append(f"| {s.phase} | {res_engine_label(s)} | {res_cell(s, 'rss_kb', mib)} | "
                   f"{res_cell(s, 'hwm_kb', mib)} | {res_cell(s, 'fds')} | "
                   f"{res_cell(s, 'threads')} | {len(s.shims)} ({mib(s.shim_rss_kb)}) | "
                   f"{s.zombies} |")
    return "\n".join(out)


def res_ratio_table(rep: ResReport) -> str:
    by_phase: dict[str, dict[str, ResSample]] = {}
    for s in rep.samples:
        by_phase.setdefault(s.phase, {})[s.engine] = s
    out = ["| phase | RSS berth/dockerd | peak berth/dockerd | fds berth/dockerd "
           "| threads berth/dockerd |",
           "|---|---:|---:|---:|---:|"]
    for phase, pair in by_phase.items():
        b, d = pair.get("berth"), pair.get("dockerd")
        if b is None or d is None:
            continue
        cells = [ratio(b.total(a), d.total(a)) for a in ("rss_kb", "hwm_kb", "fds", "threads")]
        out.append(f"| {phase} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("(dockerd = dockerd + its containerd, summed; the summed peak is the sum of "
               "each process's own peak, an upper bound of their joint peak)")
    return "\n".join(out)


def res_delta(a: int, b: int, fmt=str) -> str:
    d = b - a
    return f"{fmt(a)} → {fmt(b)} ({'+' if d >= 0 else '−'}{fmt(abs(d))})"


def res_growth(rep: ResReport) -> str:
    """Per process: end idle vs start idle, and first vs last sample of each
    phase (a steady climb there is what unbounded growth looks like)."""
    out = ["| process | RSS MiB, idle start → end | fds, idle start → end "
           "| threads, idle start → end | fds over the volume samples | fds over the run samples "
           "| threads over the run samples |",
           "|---|---:|---:|---:|---|---|---|"]
    verdicts = []
    engines = []
    for s in rep.samples:
        if s.engine not in engines:
            engines.append(s.engine)
    for eng in engines:
        ss = [s for s in rep.samples if s.engine == eng]
        start = next((s for s in ss if s.phase.startswith("idle (start")), None)
        end = next((s for s in ss if s.phase.startswith("idle (end")), None)
        vols = [s for s in ss if "volume ops" in s.phase]
        runs = [s for s in ss if s.phase.endswith(" runs")]
        for i, p in enumerate(ss[0].procs):
            def series(xs: list[ResSample], attr: str) -> str:
                return " ".join(str(getattr(x.procs[i], attr)) for x in xs) or "—"
            if start and end:
                a, b = start.procs[i], end.procs[i]
                cells = [res_delta(a.rss_kb, b.rss_kb, mib), res_delta(a.fds, b.fds),
                         res_delta(a.threads, b.threads)]
                for what, x, y in (("fds", a.fds, b.fds), ("threads", a.threads, b.threads)):
                    if y > x:
                        verdicts.append(f"{p.label}: {what} {x} at idle start, {y} at idle "
                                        f"end (+{y - x})")
            else:
                cells = ["n/a"] * 3
            out.append(f"| {p.label} | " + " | ".join(cells) + f" | {series(vols, 'fds')} | "
                       f"{series(runs, 'fds')} | {series(runs, 'threads')} |")
        if end and end.shims:
            verdicts.append(f"{eng}: {len(end.shims)} shim(s) still running at idle end: "
                            f"pids {end.shims}")
        if end and end.zombies:
            verdicts.append(f"{eng}: {end.zombies} zombie child(ren) at idle end")
    text = "\n".join(out) + "\n\n"
    if verdicts:
        text += "Higher at idle end than at idle start:\n\n" + "\n".join(
            f"- {v}" for v in verdicts) + "\n"
    else:
        text += ("No process had more fds or threads at idle end than at idle start; no shim "
                 "or zombie child was left.\n")
    return text


def binary_profile(path: str) -> str:
    parts = os.path.realpath(path).split(os.sep)
    return "release" if "release" in parts else "debug" if "debug" in parts else "unknown"


def resources_header(berth_bin: str, args: argparse.Namespace) -> list[str]:
    vol_ops = max(1, round(RES_VOL_OPS * args.resources_scale))
    runs = max(1, round(RES_RUNS * args.resources_scale))
    return [
        f"berth binary: `{berth_bin}` (**{binary_profile(berth_bin)} build**)",
        f"workload per engine (--resources-scale {args.resources_scale:g}): {vol_ops:,} volume "
        f"API ops, sampled every {max(1, vol_ops // RES_VOL_BLOCKS):,}, then {runs} container "
        f"runs, sampled every {max(1, runs // RES_RUN_BLOCKS)}; "
        f"{'one connection per request' if args.resources_conn == 'per-request' else 'one keep-alive connection'}"
        f" (http.client over the unix socket), API v{API}",
        f"volume mix, step s: create `{RES_PREFIX}<s>` with labels `{RES_LABEL}=1` and "
        f"`bench.step=<s>`, inspect it, list (plain on even steps, "
        f"`filters={{\"label\":[\"{RES_LABEL}=1\"]}}` on odd ones), and once {RES_WINDOW} "
        f"volumes are alive remove `{RES_PREFIX}<s-{RES_WINDOW}>`; the {RES_WINDOW} left "
        f"alive after the last op are removed before the runs (not counted)",
        f"a run: `POST /containers/create` {{Image {IMAGE}, Cmd [true], HostConfig: Binds "
        f"[{RES_RUN_VOLUME}:/d], NetworkMode none}}, `start`, `wait` (exit code checked), "
        f"`DELETE /containers/{{id}}` (= `docker run --rm --network none -v {RES_RUN_VOLUME}:/d "
        f"{IMAGE} true`); `{RES_RUN_VOLUME}` is made by the first run and removed after the last",
        f"the engines take turns block by block; each is sampled right after its block, the "
        f"client idle {RES_QUIET} s; idle samples after {RES_SETTLE:.0f} s with no requests "
        f"(start: after the image import)",
        "measured: berth = the `berth daemon` process (its shims, one per running container, "
        "counted apart); dockerd = dockerd + the containerd it starts (summed, each in "
        "parentheses; containerd-shim processes counted apart). RSS = VmRSS, peak = VmHWM "
        "(/proc/PID/status, since the process started), fds = entries of /proc/PID/fd, "
        "threads = Threads; zombie children = children of those processes in state Z. "
        "MiB = 1024 kB",
    ]


def res_text(rep: ResReport) -> str:
    text = "\n### Daemon resources under load\n\n"
    text += "\n".join(f"- {h}" for h in rep.header) + "\n\n"
    if rep.samples:
        text += res_table(rep) + "\n\nRatios (berth ÷ dockerd + containerd):\n\n"
        text += res_ratio_table(rep) + "\n\nGrowth:\n\n" + res_growth(rep)
    if rep.notes:
        text += "\n" + "\n".join(f"- NOTE: {n}" for n in rep.notes) + "\n"
    return text


# ---------------------------------------------------------------------------
# Machine info
# ---------------------------------------------------------------------------


def sh(argv: list[str], env=None) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
        return (p.stdout or p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def mem_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    kb = int(line.split()[1])
                    return f"{kb / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def clean_up(engines, work: str) -> None:
    """Stops every engine (last started first) and removes the run's
    folder with whatever was left under it, for every bench script."""
    for e in reversed(list(engines)):
        e.stop_and_clean()
    kill_leftovers(work)
    remove_tree(work)


def emit(text: str, out: str | None) -> None:
    """Prints a bench's table, and writes it to `out` if given."""
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


def add_binary_args(ap: argparse.ArgumentParser) -> None:
    """--berth-bin, --docker-bin and --dockerd-bin (and their BERTH_BIN,
    DOCKER_BIN, DOCKERD_BIN variables), for every bench script."""
    ap.add_argument("--berth-bin", default=os.environ.get("BERTH_BIN"))
    ap.add_argument("--docker-bin", default=os.environ.get("DOCKER_BIN")
                    or ("/usr/local/bin/docker" if os.path.exists("/usr/local/bin/docker")
                        else shutil.which("docker")))
    ap.add_argument("--dockerd-bin", default=os.environ.get("DOCKERD_BIN") or shutil.which("dockerd"))


def default_berth_bin() -> str:
    """target/release/berth if it is at least as new as target/debug/berth
    (or there is no debug build), otherwise target/debug/berth."""
    rel = os.path.join(REPO, "target", "release", "berth")
    dbg = os.path.join(REPO, "target", "debug", "berth")
    has_rel, has_dbg = os.path.exists(rel), os.path.exists(dbg)
    if has_rel and (not has_dbg or os.path.getmtime(rel) >= os.path.getmtime(dbg)):
        return rel
    if has_dbg:
        if has_rel:
            loud(f"{rel} is OLDER than {dbg}: measuring the newer DEBUG binary, which is "
                 f"slower than a release build. Run `cargo build --release` for "
                 f"meaningful numbers (or pass --berth-bin).")
        else:
            loud(f"no release build: measuring the DEBUG binary {dbg}, which is slower "
                 f"than a release build. Run `cargo build --release` first.")
        return dbg
    raise SystemExit(f"no berth binary under {REPO}/target: run `cargo build --release`")


def machine_info(berth: Berth, berth_bin: str, dockerd: Dockerd | None, docker_bin: str,
                 load_start: str) -> list[tuple[str, str]]:
    rev = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(berth.bin), datetime.timezone.utc)
    sha = hashlib.sha256()
    with open(berth.bin, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    bver = sh([berth.bin, "-H", berth.host, "version"])
    parts = os.path.realpath(berth_bin).split(os.sep)
    profile = "release" if "release" in parts else "debug" if "debug" in parts else "unknown"
    server = re.findall(r"Version:\s*(\S+)", bver)
    info = [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{cpu_model()}, nproc {os.cpu_count()} (`nproc`: {sh(['nproc'])})"),
        ("memory", mem_total()),
        ("kernel", platform.release()),
        ("load average at start / end", f"{load_start} / {loadavg()}"),
        ("berth", f"{' / '.join(server) or bver} (client / server), git {rev}"
                  f"{' + uncommitted changes' if dirty else ''}; binary {berth_bin} "
                  f"built {mtime.strftime('%Y-%m-%d %H:%M UTC')} ({profile} build, "
                  f"sha256 {sha.hexdigest()[:12]})"),
        ("dockerd", sh([dockerd.bin, "--version"]) if dockerd else "NOT RUN (dockerd not installed)"),
        ("docker CLI", sh([docker_bin, "--version"]) + f" ({docker_bin}), DOCKER_API_VERSION={API}"),
        ("thin pool", f"--thin-pool-size {berth.thin_pool_size}: {berth.root}/thin/pool.img "
                      f"(sparse, loop, XFS reflink) on "
                      f"{sh(['findmnt', '-n', '-o', 'SOURCE,FSTYPE,OPTIONS', '-T', berth.dir])}"),
        ("image", f"{IMAGE}: {BUSYBOX} ({sh([BUSYBOX, '--help']).splitlines()[0] if os.path.exists(BUSYBOX) else '?'}) + applet symlinks"),
    ]
    return info


# ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed docker runs per engine (default 20)")
    ap.add_argument("--out", help="also write the machine info and the markdown table to this file")
    ap.add_argument("--volumes", type=int, default=500, help="volumes for the API benchmark (default 500)")
    ap.add_argument("--list-reps", type=int, default=20, help="volume list calls (default 20)")
    ap.add_argument("--cli-volumes", type=int, default=1000, help="volumes for the CLI benchmark (default 1000)")
    ap.add_argument("--cli-reps", type=int, default=5, help="CLI calls per engine (default 5)")
    ap.add_argument("--only", type=parse_only, metavar="PART[,PART…]",
                    help="run ONLY these parts of the default section: "
                         f"{', '.join(MAIN_PARTS)} (plus the thin, backup or resources "
                         "section when its flag is given too)")
    ap.add_argument("--thin", action="store_true",
                    help="run ONLY the thin-volume section (plus the backup section with "
                         "--backup-only; without a section flag every section runs, "
                         "this one included)")
    ap.add_argument("--no-thin", action="store_true", help="skip the thin-volume section")
    ap.add_argument("--thin-only", choices=("snapshot", "throughput", "df"),
                    help="run only this part of the thin-volume section (implies --thin)")
    ap.add_argument("--thin-pool-size", default="40G", help="berth --thin-pool-size (default 40G)")
    ap.add_argument("--snap-reps", type=int, default=10,
                    help="timed snapshots and clones (default 10)")
    ap.add_argument("--tar-reps", type=int, default=3, help="timed dockerd tar copies (default 3)")
    ap.add_argument("--io-reps", type=int, default=5,
                    help="timed 1 GiB write+read passes per target, after one "
                         "uncounted warm-up pass (default 5)")
    ap.add_argument("--thin-volumes", type=int, default=1000,
                    help="volumes for the thin `system df -v` benchmark, each holding the "
                         "same content (default 1000; at least 2)")
    ap.add_argument("--thin-df-reps", type=int, default=5,
                    help="`system df -v` calls per engine with thin volumes (default 5)")
    ap.add_argument("--backup-only", action="store_true",
                    help="run ONLY the volume backup and restore section (plus the thin "
                         "section with --thin; without a section flag every section "
                         "runs, this one included)")
    ap.add_argument("--no-backup", action="store_true",
                    help="skip the volume backup and restore section")
    ap.add_argument("--backup-reps", type=int, default=3,
                    help="timed backups and restores of 1 GiB per engine, after one "
                         "warm-up (default 3)")
    ap.add_argument("--resources", action="store_true",
                    help="run ONLY the daemon-resources section (RSS, peak RSS, fds, threads "
                         "of each daemon, idle and during 10,000 volume ops and 500 container "
                         "runs); never part of a run without section flags")
    ap.add_argument("--resources-scale", type=float, default=1.0,
                    help="scale the resources workload (0.1: 1,000 volume ops and 50 runs "
                         "per engine; default 1)")
    ap.add_argument("--resources-conn", choices=("per-request", "keep-alive"),
                    default="per-request",
                    help="resources section: a new connection for every request (default) "
                         "or one keep-alive connection per engine")
    ap.add_argument("--keep-logs", metavar="DIR",
                    help="copy both daemon logs into DIR before their folders are removed")
    add_binary_args(ap)
    args = ap.parse_args()
    if args.thin_only:
        args.thin = True
    if args.thin and args.no_thin:
        raise SystemExit("--thin (or --thin-only) and --no-thin exclude each other")
    if args.backup_only and args.no_backup:
        raise SystemExit("--backup-only and --no-backup exclude each other")
    if not args.resources_scale > 0:
        raise SystemExit("--resources-scale must be above 0")
    if args.thin_volumes < 2:
        raise SystemExit("--thin-volumes must be at least 2 (one filled volume and its clones)")

    if os.geteuid() != 0:
        raise SystemExit("run as root (both daemons mount and create namespaces)")
    if not args.docker_bin or not os.path.exists(args.docker_bin):
        raise SystemExit("docker CLI not found (set DOCKER_BIN or --docker-bin)")
    berth_bin = args.berth_bin or default_berth_bin()
    if not os.path.exists(berth_bin):
        raise SystemExit(f"berth binary not found: {berth_bin}")
    if not args.dockerd_bin:
        loud("dockerd IS NOT INSTALLED: the dockerd column will be EMPTY (n/a).\n"
             "!!! Install Debian's docker.io (apt-get install docker.io) to compare.")
    elif os.path.exists("/run/containerd/containerd.sock"):
        loud("a system containerd runs at /run/containerd/containerd.sock: the private "
             "dockerd will use it instead of starting its own")

    # SIGTERM/SIGHUP end the run through the finally block below.
    def _term(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGHUP, _term)

    load_start = loadavg()
    work = tempfile.mkdtemp(prefix="bw-", dir="/tmp")
    berth: Berth | None = None
    dockerd: Dockerd | None = None
    res = Results()
    thin = ThinTable()
    backup = BackupTable()
    resources = ResReport()
    info: list[tuple[str, str]] = []
    # section flags: run just those sections
    only = bool(args.thin or args.backup_only or args.resources or args.only)
    # parts of the default section: all of them without section flags
    parts = args.only or (set() if only else set(MAIN_PARTS))
    try:
        # Run a private copy, so that a rebuild during the run cannot mix two
        # versions (the daemon starts shims from its own executable).
        bin_copy = os.path.join(work, "berth")
        shutil.copy2(berth_bin, bin_copy)
        log(f"berth binary: {berth_bin} (run as {bin_copy})")
        berth = Berth(bin_copy, args.docker_bin, args.thin_pool_size)
        berth.start(timeout=30)
        log(f"berth daemon pid {berth.proc.pid} on {berth.sock}")
        engines: list[Engine] = [berth]
        if args.dockerd_bin:
            dockerd = Dockerd(args.dockerd_bin, args.docker_bin)
            dockerd.start(timeout=90)
            log(f"private dockerd pid {dockerd.proc.pid} on {dockerd.sock}")
            engines.append(dockerd)

        img = build_image_dir(work)
        for e in engines:
            try:
                import_image(e, img)
            except RuntimeError as exc:
                if e is berth:
                    raise RuntimeError(f"{exc}\n(is {berth_bin} older than berth's images "
                                       f"and containers support? rebuild it)") from None
                raise
            log(f"imported {IMAGE} into {e.name}")

        if args.resources:  # first, on daemons that have done nothing but the import
            log("resources section: daemon RSS, fds and threads under load")
            resources.header = resources_header(berth_bin, args)
            bench_resources(resources, engines, args.resources_scale,
                            args.resources_conn == "per-request")
        if "version" in parts:
            # The floor: one docker CLI process and its small version request(s).
            bench_run(res, engines, "baseline: `docker version` (CLI start-up + small requests)",
                      ["version"], args.runs, stats=("median",))
        if "run" in parts:
            run = ["run", "--rm", "--network", "none", IMAGE, "true"]
            bench_run(res, engines, "`docker run --rm --network none benchimg:1 true`", run,
                      args.runs)
        if "run-volume" in parts:
            runv = ["run", "--rm", "--network", "none", "-v", "benchvol:/d", IMAGE, "true"]
            try:
                bench_run(res, engines,
                          "`docker run --rm --network none -v benchvol:/d benchimg:1 true`",
                          runv, args.runs)
            finally:
                for e in engines:
                    remove_volumes(e, ["benchvol"])
        if "exec" in parts:
            bench_exec(res, engines, args.runs)
        if "volume-api" in parts:
            bench_volume_api(res, engines, args.volumes, args.list_reps)
        if "volume-cli" in parts:
            bench_cli_volumes(res, engines, args.cli_volumes, args.cli_reps)
        if not args.no_thin and (args.thin or not only):
            bench_thin(thin, berth, dockerd, work, args)
        if not args.no_backup and (args.backup_only or not only):
            log("backup section: volume backup and restore")
            bench_backup(backup, berth, dockerd, work, args.backup_reps)
        info = machine_info(berth, berth_bin, dockerd, args.docker_bin, load_start)
    finally:
        for e in (dockerd, berth):
            if e is not None:
                log(f"stopping {e.name} (pid {e.proc.pid if e.proc else '-'})")
                try:
                    stop_proc(e.proc, timeout=30)
                    if args.keep_logs and os.path.exists(e.log):
                        os.makedirs(args.keep_logs, exist_ok=True)
                        shutil.copy(e.log, os.path.join(args.keep_logs, f"{e.name}.log"))
                except Exception as exc:
                    log(f"WARNING: stopping {e.name} failed: {exc!r}")
                finally:
                    try:
                        e.stop_and_clean()  # SIGKILL fallback, leftovers, unmount, rm
                    except Exception as exc:  # keep cleaning the other one
                        log(f"WARNING: cleaning {e.name} failed: {exc!r}")
        kill_leftovers(work)
        remove_tree(work)

    text = "\n".join(f"- {k}: {v}" for k, v in info) + "\n"
    if res.rows:
        text += "\n" + res.table() + "\n"
    if res.notes:
        text += "\n" + "\n".join(f"- NOTE: {n}" for n in res.notes) + "\n"
    if thin.rows:
        text += "\n### Thin volumes\n\n" + thin.table() + "\n"
    if thin.notes:
        text += "\n" + "\n".join(f"- NOTE: {n}" for n in thin.notes) + "\n"
    if backup.rows:
        text += "\n### Volume backup and restore\n\n" + backup.table() + "\n"
    if backup.notes:
        text += "\n" + "\n".join(f"- NOTE: {n}" for n in backup.notes) + "\n"
    if resources.header:
        text += res_text(resources)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        log(f"wrote {args.out}")
    if thin.failed:
        loud(f"{thin.failed} thin measurement(s) FAILED (n/a in the table; see the NOTEs)")
    if backup.failed:
        loud(f"{backup.failed} backup/restore measurement(s) FAILED (n/a in the table; "
             f"see the NOTEs)")
    if resources.failed:
        loud("the resources section FAILED (see the NOTE; the table holds the samples "
             "taken before the failure)")
    return 1 if thin.failed or backup.failed or resources.failed else 0


if __name__ == "__main__":
    sys.exit(main())
