"""Many clients at once on overlapping names: no deadlock, no 500, only the
statuses each operation may answer, and a consistent state afterwards.

THREADS (50) client threads run for DURATION seconds against one daemon,
each request on its own connection with a hard timeout:

- volume create / inspect / rm / ls on a pool of 10 names, and prune;
- container create *without* a name: exactly UNNAMED (10) per thread,
  50 x 10 = 500 in all, some with an anonymous volume; every one must be
  created (201) with a name of its own;
- container create with overlapping names (a pool of 10), with volumes of
  the pool or anonymous ones: 409 (name taken) is the only failure allowed;
- container start / stop / rm -f / prune on those overlapping containers.

A watchdog fails the test when any request has been waiting longer than
BOUND seconds (a deadlock or a lost wake-up), naming the request. At the
end the volume list must equal ROOT/volumes, no shim, container process,
mount or folder may be left for a container that is not running, and after
every container is removed (force) every volume must be removable (204):
a 409 then names the leaked holders.

Environment:
  BERTH_CONCURRENCY_SECONDS  how long the mix runs (default 20; e.g. 600 for a soak)
  BERTH_CONCURRENCY_THREADS  client threads (default 50)
  BERTH_CONCURRENCY_BOUND    longest time one request may take (default 60 s)
  BERTH_CONCURRENCY_SEED     makes the random choices reproducible (printed)
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

from busybox_image import import_busybox, remove_all_containers
from conftest import error_message, mounts_under, unix_http
from container_helpers import scrub_root
from test_crash_harness import (IN_USE, containers_now, disk_problems, network_anchors, settle,
                                volumes_now)

DURATION = float(os.environ.get("BERTH_CONCURRENCY_SECONDS", "20"))
THREADS = int(os.environ.get("BERTH_CONCURRENCY_THREADS", "50"))
BOUND = float(os.environ.get("BERTH_CONCURRENCY_BOUND", "60"))
UNNAMED = 10
VOL_POOL = [f"cv{i}" for i in range(10)]
CTR_POOL = [f"co{i}" for i in range(10)]

# What each operation may answer; anything else (a 500 above all) fails.
ALLOWED = {
    "volume create": {201},
    "volume inspect": {200, 404},
    "volume rm": {204, 404, 409},        # 409: a container holds it
    "volume ls": {200},
    "volume prune": {200, 409},          # 409: another prune is running
    "container create unnamed": {201},
    "container create named": {201, 409},  # 409: the name is taken
    "container start": {204, 304, 404, 409},  # 304 running; 404 removed; 409 being removed
    "container stop": {204, 304, 404},
    "container rm -f": {204, 404, 409},  # 409: its removal is already in progress
    "container prune": {200, 409},
}
# The meaning a 409 must have, where the operation says which.
CONFLICT_MEANING = {
    "volume rm": IN_USE,
    "container create named": re.compile(r"is already in use by container"),
    # Docker marks a force-removed container first: a start meanwhile is
    # refused, and a second rm -f is told the removal is in progress; a
    # forced remove never answers "container is running".
    "container rm -f": re.compile(r"removal of container \S+ is already in progress"),
    "container start": re.compile(r"marked for removal|removal of container \S+ is already in progress"),
}


def quote(filters: dict) -> str:
    return urllib.parse.quote(json.dumps(filters, separators=(",", ":")))


def grouped(messages: list[str]) -> list[str]:
    """The same failure with other ids or names once, with its count."""
    norm = Counter()
    for m in messages:
        m = re.sub(r"[0-9a-f]{64}", "<id>", m)
        m = re.sub(r"\b[0-9a-f]{12}\b", "<id>", m)
        m = re.sub(r"\bclient\d+\b", "clientN", m)
        m = re.sub(r"\b(co|cv)\d\b", r"\1N", m)
        m = re.sub(r"\b[a-z]+_[a-z]+\d?\b", "<name>", m)
        norm[m] += 1
    return [f"{n}x {m}" if n > 1 else m for m, n in norm.most_common()]


class Run:
    def __init__(self, d, image, seed):
        self.d = d
        self.image = image
        self.seed = seed
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.slowest: dict[str, float] = defaultdict(float)
        self.samples: dict[tuple[str, int], str] = {}     # first message of each error status
        self.in_flight: dict[str, tuple[float, str]] = {}
        self.unnamed_ids: list[str] = []
        self.unnamed_failed: list[str] = []
        self.created_ids: set[str] = set()   # named creates answered 201
        self.stop_at = time.monotonic() + DURATION

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)

    def call(self, kind, method, path, body=None):
        me = threading.current_thread().name
        t0 = time.monotonic()
        with self.lock:
            self.in_flight[me] = (t0, f"{kind}: {method} {path}")
        try:
            status, hdrs, data = unix_http(self.d.sock, method, path, body, timeout=BOUND + 10)
        except (OSError, http.client.HTTPException) as e:
            self.fail(f"{me} {kind} {method} {path}: no answer after {time.monotonic() - t0:.1f}s: {e!r}")
            return None, None
        finally:
            with self.lock:
                self.in_flight.pop(me, None)
        took = time.monotonic() - t0
        msg = error_message(hdrs, data) if status >= 400 else ""
        with self.lock:
            self.statuses[kind][status] += 1
            self.slowest[kind] = max(self.slowest[kind], took)
            if msg:
                self.samples.setdefault((kind, status), msg)
        if status not in ALLOWED[kind]:
            self.fail(f"{kind} {method} {path} -> {status} {msg!r} (allowed {sorted(ALLOWED[kind])})")
        elif status == 409 and kind in CONFLICT_MEANING and not CONFLICT_MEANING[kind].search(msg):
            self.fail(f"{kind} {method} {path} -> 409 with an unexpected meaning: {msg!r}")
        if took > BOUND:
            self.fail(f"{kind} {method} {path} took {took:.1f}s (bound {BOUND:g}s)")
        parsed = None
        if status < 400 and data.strip():
            try:
                parsed = json.loads(data)
            except ValueError:
                pass
        return status, (parsed if status < 400 else msg)

    # -- operations ----------------------------------------------------------

    def unnamed_create(self, rng):
        body = {"Image": self.image, "Cmd": ["true"], "Labels": {"pool": "unnamed"}}
        if rng.random() < 0.33:
            body["HostConfig"] = {"Binds": ["/d"]}
        status, resp = self.call("container create unnamed", "POST", "/containers/create", body)
        with self.lock:
            if status == 201:
                self.unnamed_ids.append(resp["Id"])
            else:
                self.unnamed_failed.append(f"{status} {resp!r}")

    def named_create(self, rng):
        name = rng.choice(CTR_POOL)
        cmd = rng.choice([["true"], ["sleep", "2"], ["sh", "-c", "echo x > /d/f"]])
        roll = rng.random()
        if roll < 0.5 or cmd[0] == "sh" and roll < 0.75:
            binds = [f"{rng.choice(VOL_POOL)}:/d"]
        elif roll < 0.75 or cmd[0] == "sh":
            binds = ["/d"]
        else:
            binds = []
        body = {"Image": self.image, "Cmd": cmd, "Labels": {"pool": "overlap"},
                "HostConfig": {"Binds": binds}}
        status, resp = self.call("container create named", "POST", f"/containers/create?name={name}", body)
        if status == 201:
            with self.lock:
                self.created_ids.add(resp["Id"])

    def op(self, rng):
        kind = rng.choices(
            ["vc", "vi", "vr", "vl", "vp", "cc", "cs", "ct", "cr", "cp"],
            [12, 8, 10, 4, 2, 14, 14, 6, 10, 2])[0]
        v, c = rng.choice(VOL_POOL), rng.choice(CTR_POOL)
        if kind == "vc":
            self.call("volume create", "POST", "/volumes/create", {"Name": v})
        elif kind == "vi":
            self.call("volume inspect", "GET", f"/volumes/{v}")
        elif kind == "vr":
            self.call("volume rm", "DELETE", f"/volumes/{v}")
        elif kind == "vl":
            self.call("volume ls", "GET", "/volumes")
        elif kind == "vp":
            q = "" if rng.random() < 0.5 else "?filters=" + quote({"all": ["true"]})
            self.call("volume prune", "POST", "/v1.45/volumes/prune" + q)
        elif kind == "cc":
            self.named_create(rng)
        elif kind == "cs":
            self.call("container start", "POST", f"/containers/{c}/start")
        elif kind == "ct":
            self.call("container stop", "POST", f"/containers/{c}/stop?t=1")
        elif kind == "cr":
            self.call("container rm -f", "DELETE", f"/containers/{c}?force=1&v=1")
        else:
            self.call("container prune", "POST",
                      f"/containers/prune?filters={quote({'label': ['pool=overlap']})}")

    def client(self, rng):
        try:
            self._client(rng)
        except Exception:  # noqa: BLE001 - a test bug must not pass unseen
            self.fail(f"{threading.current_thread().name} failed:\n{traceback.format_exc()}")

    def _client(self, rng):
        unnamed_left = UNNAMED
        while True:
            now = time.monotonic()
            if now >= self.stop_at and unnamed_left == 0:
                return
            if unnamed_left and (now >= self.stop_at or rng.random() < 0.12):
                unnamed_left -= 1
                self.unnamed_create(rng)
            else:
                self.op(rng)

    def watchdog(self, done: threading.Event):
        reported = set()
        while not done.wait(0.5):
            now = time.monotonic()
            with self.lock:
                slow = [(who, now - t0, what) for who, (t0, what) in self.in_flight.items()
                        if now - t0 > BOUND and (who, t0) not in reported]
                for who, _, _ in slow:
                    reported.add((who, self.in_flight[who][0]))
            for who, age, what in slow:
                self.fail(f"watchdog: {who} has waited {age:.0f}s for {what} (deadlock?)")


def test_concurrent_clients_on_overlapping_names(berth_factory):
    seed = int(os.environ.get("BERTH_CONCURRENCY_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"\nconcurrency: BERTH_CONCURRENCY_SEED={seed} threads={THREADS} seconds={DURATION:.0f} "
          f"bound={BOUND:.0f}s")
    d = berth_factory().start()
    try:
        _run(d, seed)
    finally:
        if d.running():
            remove_all_containers(d)
        d.stop()
        done = scrub_root(d)
        if done:
            print("cleanup had to: " + "; ".join(done))


def _run(d, seed):
    image = import_busybox(d, f"conc-{uuid.uuid4().hex[:8]}:v1")
    rng = random.Random(seed)
    run = Run(d, image, seed)
    done = threading.Event()
    dog = threading.Thread(target=run.watchdog, args=(done,), name="watchdog", daemon=True)
    dog.start()
    threads = [threading.Thread(target=run.client, args=(random.Random(rng.randrange(1 << 32)),),
                                name=f"client{i}", daemon=True) for i in range(THREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    hard_end = t0 + DURATION + 2 * BOUND + 30
    for t in threads:
        t.join(timeout=max(0.1, hard_end - time.monotonic()))
    done.set()
    elapsed = time.monotonic() - t0
    hung = [t.name for t in threads if t.is_alive()]
    with run.lock:
        waiting = {who: f"{what} for {time.monotonic() - since:.0f}s"
                   for who, (since, what) in run.in_flight.items()}
    print(f"concurrency: mix ran {elapsed:.1f}s")
    for kind in sorted(run.statuses):
        print(f"  {kind}: {dict(sorted(run.statuses[kind].items()))} slowest {run.slowest[kind]:.2f}s")
        for (k, status), msg in sorted(run.samples.items()):
            if k == kind:
                print(f"      e.g. {status}: {msg[:160]}")
    assert not hung, f"client threads still blocked {hard_end - t0:.0f}s after the start: {waiting}"
    assert d.running(), "the daemon died during the run"

    problems = list(run.failures)
    # Every unnamed create succeeded, each with a name of its own.
    want = THREADS * UNNAMED
    if len(run.unnamed_ids) != want:
        failed = Counter(run.unnamed_failed)
        problems.append(f"{len(run.unnamed_ids)} of {want} unnamed creates succeeded; failures: "
                        f"{dict(failed.most_common(5))}")
    if len(set(run.unnamed_ids)) != len(run.unnamed_ids):
        problems.append("unnamed creates answered the same id twice")
    ctrs = containers_now(d)
    names = Counter(c["Name"] for c in ctrs.values())
    dup = {n: k for n, k in names.items() if k > 1}
    if dup:
        problems.append(f"container names used more than once: {dup}")
    missing = [cid[:12] for cid in run.unnamed_ids if cid not in ctrs]
    if missing:
        problems.append(f"unnamed containers created (201) but gone: {missing[:10]} ({len(missing)})")

    # The state now (the mix has stopped; overlap containers may still run).
    d.seen_ids = run.created_ids | set(run.unnamed_ids)   # their cgroups must go once stopped
    ctrs, vols, host = settle(d)
    problems += [f"after the mix: {p}" for p in host]

    # References: remove every container, then every volume must go.
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(
            lambda cid: (cid, *unix_http(d.sock, "DELETE", f"/containers/{cid}?force=1&v=1",
                                         timeout=BOUND + 10)), ctrs))
    for cid, status, hdrs, data in answers:
        if status not in (204, 404):
            problems.append(f"DELETE /containers/{cid[:12]}?force=1 -> {status} {error_message(hdrs, data)!r}")
    ctrs2, vols2, host2 = settle(d)
    problems += [f"all containers removed: {p}" for p in host2]
    if ctrs2:
        problems.append(f"containers left after removing all: {[c[:12] for c in ctrs2]}")
    for name in sorted(vols2):
        status, hdrs, data = unix_http(d.sock, "DELETE", f"/volumes/{name}", timeout=BOUND + 10)
        if status != 204:
            problems.append(f"with no container left, DELETE /volumes/{name} -> {status} "
                            f"{error_message(hdrs, data)!r}" + (" (leaked reference)" if status == 409 else ""))
    vols3 = volumes_now(d)
    if vols3:
        problems.append(f"volumes left after removing all: {sorted(vols3)}")
    problems += [f"all volumes removed: {p}" for p in disk_problems(d, vols3)]
    left = [m for m in mounts_under(d.root) if m not in network_anchors(d)]
    if left:
        problems.append(f"mounts left with nothing in use: {left}")

    shown = grouped(problems)
    shown = shown[:60] + ([f"... and {len(shown) - 60} more kinds"] if len(shown) > 60 else [])
    assert not problems, (f"{len(problems)} problem(s) (BERTH_CONCURRENCY_SEED={seed}):\n  "
                          + "\n  ".join(shown))
    assert d.stop() == 0
