"""Must-show 5: kill -9 at a random instant loses nothing acknowledged and
leaves no orphan.

Each round starts berth on the same root; a writer thread streams random
creates (named, with random labels, and some anonymous) and removes over raw
HTTP, one new connection per request, recording only acknowledged results
(201 for create, 204 for remove). After a random 5-150 ms the daemon is
killed with SIGKILL; then it is restarted on the same root and checked:

* every acknowledged volume not later removed exists with exactly its labels;
* every volume removed with an acknowledged 204 and not re-created is gone;
* the request in flight at the kill may or may not have been applied (either
  outcome is accepted, but nothing in between);
* the API's list equals the set of folders under ROOT/volumes (no orphan
  folder, no volume without its folder), and each has its _data.

BERTH_CRASH_ROUNDS (default 50) sets the number of rounds; BERTH_CRASH_SEED
makes a run reproducible (the seed is printed).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import string
import threading
import time

from conftest import unix_http

ROUNDS = int(os.environ.get("BERTH_CRASH_ROUNDS", "50"))
ANON = "com.docker.volume.anonymous"
NAMES = [f"crash{i:02d}" for i in range(40)]


class Model:
    """What the client knows. ``present``: name -> labels (acknowledged);
    ``unknown``: name -> (kind, labels) for the request in flight at the
    kill; names not in either are known absent."""

    def __init__(self):
        self.present: dict[str, dict] = {}
        self.unknown: dict[str, tuple[str, dict]] = {}
        self.anon_in_flight = 0  # an anonymous create whose answer never came
        self.errors: list[str] = []
        self.acked_creates = 0
        self.acked_removes = 0
        self.cut_mid_request = 0  # rounds where the kill hit a request in flight

    def lost_answer(self, exc: BaseException):
        # Refused: the daemon was already dead, so nothing was sent. Anything
        # else (reset, EOF, truncated answer) cut a request in flight.
        if not isinstance(exc, (ConnectionRefusedError, FileNotFoundError)):
            self.cut_mid_request += 1


def random_labels(rng: random.Random) -> dict:
    labels = {}
    for _ in range(rng.randint(0, 3)):
        key = rng.choice(["app", "tier", "owner", "k", "com.example.x"]) + str(rng.randint(0, 9))
        value = "".join(rng.choice(string.ascii_letters + string.digits + " =:/.-")
                        for _ in range(rng.randint(0, 12)))
        labels[key] = value
    return labels


def writer(sock, model: Model, rng: random.Random, stop: threading.Event):
    """Runs until the daemon stops answering (it was killed) or ``stop``.
    A request that fails without an answer is in flight: its outcome is
    unknown."""

    while not stop.is_set():
        absent = [n for n in NAMES if n not in model.present and n not in model.unknown]
        present = list(model.present)
        roll = rng.random()
        if roll < 0.1:
            op, name = "anon", None
        elif present and (roll < 0.45 or not absent):
            op, name = "remove", rng.choice(present)
        elif absent:
            op, name = "create", rng.choice(absent)
        else:
            time.sleep(0.001)
            continue

        if op == "remove":
            labels = model.present[name]
            try:
                status, _, body = unix_http(sock, "DELETE", f"/volumes/{name}", timeout=10)
            except (OSError, http.client.HTTPException) as e:
                model.lost_answer(e)
                model.unknown[name] = ("remove", labels)
                del model.present[name]
                return
            if status == 204:
                del model.present[name]
                model.acked_removes += 1
            else:
                model.errors.append(f"DELETE {name} -> {status} {body!r}")
                return
        else:
            labels = random_labels(rng)
            req = {"Labels": labels} if op == "anon" else {"Name": name, "Labels": labels}
            try:
                status, _, body = unix_http(sock, "POST", "/volumes/create", req, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                model.lost_answer(e)
                if op == "anon":
                    model.anon_in_flight += 1
                else:
                    model.unknown[name] = ("create", labels)
                return
            if status != 201:
                model.errors.append(f"POST create {req} -> {status} {body!r}")
                return
            vol = json.loads(body)
            got = vol.get("Labels") or {}
            if op == "anon":
                want = dict(labels, **{ANON: ""})
                name = vol["Name"]
            else:
                want = labels
            if got != want or vol.get("Name") != name:
                model.errors.append(f"create {name}: answered {vol}, asked labels {want}")
                return
            model.present[name] = want
            model.acked_creates += 1


def verify(berth, model: Model, round_no: int):
    """Checks the restarted daemon against the model, then settles the
    unknowns to what the daemon shows."""
    listed = berth.list_volumes()
    actual = {n: (v.get("Labels") or {}) for n, v in listed.items()}
    disk = berth.volume_dirs()
    where = f"round {round_no}"

    assert set(actual) == disk, (
        f"{where}: API list and ROOT/volumes differ: only in API {sorted(set(actual) - disk)}, "
        f"only on disk (orphans) {sorted(disk - set(actual))}")
    for n in actual:
        assert os.path.isdir(berth.mountpoint(n)), f"{where}: {n} has no _data folder"
    left = berth.wait_trash_empty()
    assert not left, f"{where}: removed volumes' storage never destroyed: {sorted(left)}"

    for name, labels in model.present.items():
        assert name in actual, f"{where}: acknowledged volume {name} is lost"
        assert actual[name] == labels, f"{where}: {name} labels {actual[name]} != acknowledged {labels}"
    for name, (kind, labels) in model.unknown.items():
        if name in actual:
            assert actual[name] == labels, (
                f"{where}: in-flight {kind} of {name}: labels {actual[name]} != {labels}")
    extra = set(actual) - set(model.present) - set(model.unknown)
    anon_extra = {n for n in extra if ANON in actual[n]}
    assert not (extra - anon_extra), f"{where}: volumes that were never created or were removed: " \
                                     f"{sorted(extra - anon_extra)}"
    assert len(anon_extra) <= model.anon_in_flight, (
        f"{where}: unexpected anonymous volumes {sorted(anon_extra)}")

    # Settle: the daemon's answer for the unknowns is now the truth.
    for name in list(model.unknown):
        if name in actual:
            model.present[name] = actual[name]
    for name in anon_extra:
        model.present[name] = actual[name]
    model.unknown.clear()
    model.anon_in_flight = 0


def test_kill9_loses_nothing_acknowledged(berth_factory):
    seed = int(os.environ.get("BERTH_CRASH_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"\ncrash test: {ROUNDS} rounds, BERTH_CRASH_SEED={seed}")
    rng = random.Random(seed)
    berth = berth_factory()
    model = Model()
    t0 = time.monotonic()

    for round_no in range(1, ROUNDS + 1):
        berth.start()
        if round_no > 1:
            verify(berth, model, round_no - 1)

        stop = threading.Event()
        wrng = random.Random(rng.randrange(1 << 32))
        t = threading.Thread(target=writer, args=(berth.sock, model, wrng, stop), daemon=True)
        t.start()
        time.sleep(rng.uniform(0.005, 0.150))
        berth.kill9()
        stop.set()
        t.join(timeout=30)
        assert not t.is_alive(), "writer thread hung"
        assert not model.errors, f"round {round_no}: unexpected answers: {model.errors}"

    berth.start()
    verify(berth, model, ROUNDS)
    elapsed = time.monotonic() - t0
    print(f"crash test: {model.acked_creates} acknowledged creates, {model.acked_removes} "
          f"acknowledged removes, {model.cut_mid_request} kills during a request, "
          f"{len(model.present)} volumes at the end, {elapsed:.1f}s")
    assert model.acked_creates > 0 and model.acked_removes > 0

    # A clean stop after all that still works.
    assert berth.stop() == 0
