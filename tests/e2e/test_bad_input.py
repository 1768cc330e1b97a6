"""Must-show 4: bad input is a clear 4xx over raw HTTP, and changes nothing.

Each case sends one bad request on a new connection to a daemon that holds
a few volumes (one anonymous, one with driver options), checks the status
and the message, and then checks that nothing changed: the volumes the API
lists (with their labels and options), the folders under ROOT/volumes, and
``SELECT count(*) FROM volumes`` in ROOT/berth.db (opened read-only).
"""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.parse

import pytest

from conftest import BerthDaemon, error_message

INVALID_CHARS = ('create {n}: "{n}" includes invalid characters for a local volume name, only '
                 '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                 'directory, use absolute path')
LONG = "x" * 300


def q(filters) -> str:
    return urllib.parse.quote(filters if isinstance(filters, str) else json.dumps(filters))


# (id, method, path, body, headers, status, message check)
# The message check is a string (exact), a compiled regex (fullmatch) or a
# callable.
CASES = [
    # --- names ---------------------------------------------------------------
    ("name-slash", "POST", "/volumes/create", {"Name": "a/b"}, None, 400,
     INVALID_CHARS.format(n="a/b")),
    ("name-dotdot", "POST", "/volumes/create", {"Name": ".."}, None, 400,
     INVALID_CHARS.format(n="..")),
    ("name-space", "POST", "/volumes/create", {"Name": "a b"}, None, 400,
     INVALID_CHARS.format(n="a b")),
    ("name-leading-dash", "POST", "/volumes/create", {"Name": "-ab"}, None, 400,
     INVALID_CHARS.format(n="-ab")),
    ("name-one-char", "POST", "/volumes/create", {"Name": "a"}, None, 400,
     "create a: volume name is too short, names should be at least two alphanumeric characters"),
    ("name-300", "POST", "/volumes/create", {"Name": LONG}, None, 400,
     lambda m: m.startswith(f"create {LONG}: ") and "255" in m),
    ("name-not-string", "POST", "/volumes/create", b'{"Name": 5}',
     {"Content-Type": "application/json"}, 400, lambda m: m.startswith("invalid JSON")),
    # --- body and Content-Type -------------------------------------------------
    ("json-truncated", "POST", "/volumes/create", b'{"Name": "ok1"',
     {"Content-Type": "application/json"}, 400, lambda m: m.startswith("invalid JSON")),
    ("json-garbage", "POST", "/volumes/create", b"xyz",
     {"Content-Type": "application/json"}, 400, lambda m: m.startswith("invalid JSON")),
    ("json-array", "POST", "/volumes/create", b'["ok1"]',
     {"Content-Type": "application/json"}, 400, lambda m: m.startswith("invalid JSON")),
    ("json-trailing", "POST", "/volumes/create", b'{"Name": "ok1"} {"Name": "ok2"}',
     {"Content-Type": "application/json"}, 400, lambda m: "after JSON" in m or m.startswith("invalid JSON")),
    ("content-type-text", "POST", "/volumes/create", b'{"Name": "ok1"}',
     {"Content-Type": "text/plain"}, 400,
     "unsupported Content-Type header (text/plain): must be 'application/json'"),
    ("content-type-form", "POST", "/volumes/create", b"Name=ok1",
     {"Content-Type": "application/x-www-form-urlencoded"}, 400,
     "unsupported Content-Type header (application/x-www-form-urlencoded): must be 'application/json'"),
    ("content-type-missing", "POST", "/volumes/create", b'{"Name": "ok1"}', {}, 400,
     lambda m: "Content-Type" in m),
    # --- driver and options ------------------------------------------------------
    ("opts-type-without-device", "POST", "/volumes/create",
     {"Name": "ok1", "DriverOpts": {"type": "tmpfs"}}, None, 400,
     'create ok1: missing required option: "device"'),
    ("opts-device-without-type", "POST", "/volumes/create",
     {"Name": "ok1", "DriverOpts": {"device": "tmpfs"}}, None, 400,
     'create ok1: missing required option: "type"'),
    ("opts-unknown", "POST", "/volumes/create",
     {"Name": "ok1", "DriverOpts": {"bogus": "1"}}, None, 400,
     'create ok1: invalid option: "bogus"'),
    ("opts-size-on-local", "POST", "/volumes/create",
     {"Name": "ok1", "DriverOpts": {"size": "10M"}}, None, 400,
     lambda m: m.startswith("create ok1: ") and "thin" in m),
    ("driver-unknown", "POST", "/volumes/create", {"Name": "ok1", "Driver": "nope"}, None, 404,
     'create ok1: error looking up volume plugin nope: plugin "nope" not found'),
    ("recreate-other-options", "POST", "/volumes/create",
     {"Name": "seedopt", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}},
     None, 409, lambda m: m.startswith("create seedopt: ")),
    # --- list filters ------------------------------------------------------------
    ("filter-unknown-key", "GET", "/volumes?filters=" + q({"colour": ["x"]}), None, None, 400,
     "invalid filter 'colour'"),
    ("filter-dangling-maybe", "GET", "/volumes?filters=" + q({"dangling": ["maybe"]}), None, None,
     400, "invalid filter 'dangling=[maybe]'"),
    ("filter-not-json", "GET", "/volumes?filters=notjson", None, None, 400,
     lambda m: "invalid filter" in m.lower()),
    # --- prune must not delete anything on a bad request -------------------------
    ("prune-filter-unknown", "POST", "/volumes/prune?filters=" + q({"colour": ["x"]}), None, None,
     400, "invalid filter 'colour'"),
    ("prune-filter-dangling", "POST", "/volumes/prune?filters=" + q({"dangling": ["true"]}), None,
     None, 400, "invalid filter 'dangling'"),
    ("prune-filter-not-json", "POST", "/volumes/prune?filters=notjson", None, None, 400,
     lambda m: "invalid filter" in m.lower()),
    ("prune-all-not-bool", "POST", "/volumes/prune?filters=" + q({"all": ["maybe"]}), None, None,
     400, lambda m: m.startswith("invalid filter 'all'")),
    # --- remove / inspect -----------------------------------------------------------
    ("remove-unknown", "DELETE", "/volumes/nosuch", None, None, 404, "get nosuch: no such volume"),
    ("inspect-unknown", "GET", "/volumes/nosuch", None, None, 404, "get nosuch: no such volume"),
    # --- API versions ---------------------------------------------------------------
    ("version-too-old", "GET", "/v1.12/volumes", None, None, 400,
     "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade "
     "your client to a newer version"),
    ("version-too-old-create", "POST", "/v1.23/volumes/create", {"Name": "ok1"}, None, 400,
     "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade "
     "your client to a newer version"),
    ("version-too-new", "GET", "/v1.99/volumes", None, None, 400,
     "client version 1.99 is too new. Maximum supported API version is 1.45"),
    ("version-too-new-create", "POST", "/v1.46/volumes/create", {"Name": "ok1"}, None, 400,
     "client version 1.46 is too new. Maximum supported API version is 1.45"),
]


@pytest.fixture(scope="module")
def seeded():
    """A daemon holding: seed1 (plain), seed2 (labels), seedopt (driver
    options), and one anonymous volume, the prune candidate."""
    d = BerthDaemon()
    try:
        d.start()
        for body in ({"Name": "seed1"},
                     {"Name": "seed2", "Labels": {"a": "b"}},
                     {"Name": "seedopt", "DriverOpts": {"type": "tmpfs", "device": "tmpfs",
                                                        "o": "size=1m"}},
                     {}):
            status, resp = d.api("POST", "/volumes/create", body)
            assert status == 201, (body, status, resp)
        yield d
    finally:
        d.cleanup()


def snapshot(d: BerthDaemon):
    vols = d.list_volumes()
    api = {n: (v["Driver"], json.dumps(v["Labels"], sort_keys=True),
               json.dumps(v["Options"], sort_keys=True), v["Mountpoint"], v["CreatedAt"])
           for n, v in vols.items()}
    disk = sorted(d.volume_dirs())
    con = sqlite3.connect(f"file:{d.db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT count(*) FROM volumes").fetchone()[0]
    finally:
        con.close()
    return {"api": api, "disk": disk, "db_rows": rows}


def check_message(check, msg):
    if isinstance(check, str):
        return msg == check
    if isinstance(check, re.Pattern):
        return check.fullmatch(msg) is not None
    return bool(check(msg))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_clear_and_changes_nothing(seeded, case):
    _, method, path, body, headers, want_status, want_msg = case
    before = snapshot(seeded)
    assert len(before["api"]) == 4 and before["db_rows"] == 4, before

    try:
        status, hdrs, data = seeded.http(method, path, body, headers)
        msg = error_message(hdrs, data)
        assert status == want_status, f"{method} {path} -> {status} {data!r}"
        assert check_message(want_msg, msg), f"{method} {path} -> {status}: message {msg!r}"
        if not path.startswith("/v1.1") and not path.startswith("/v1.23"):
            # Below 1.24 moby answers in plain text; otherwise JSON {"message"}.
            assert hdrs.get("Content-Type", "").split(";")[0] == "application/json", hdrs
            assert set(json.loads(data)) == {"message"}

        after = snapshot(seeded)
        assert after == before, f"state changed by {method} {path}"
        # The daemon still serves.
        assert seeded.http("GET", "/_ping")[0] == 200
    finally:
        # Undo a wrongly accepted create so that one failure does not fail
        # every later case on the shared daemon.
        for extra in set(seeded.list_volumes()) - set(before["api"]):
            seeded.http("DELETE", f"/volumes/{extra}?force=1")


def test_error_bodies_are_json_with_message(seeded):
    status, hdrs, data = seeded.http("GET", "/volumes/nosuch")
    assert status == 404
    assert hdrs.get("Content-Type") == "application/json"
    assert json.loads(data) == {"message": "get nosuch: no such volume"}


def test_unknown_route_is_404(seeded):
    status, hdrs, data = seeded.http("GET", "/no/such/route")
    assert status == 404
    assert json.loads(data) == {"message": "page not found"}


def test_good_requests_after_bad_ones(seeded):
    """Control: the same daemon accepts good input and it shows everywhere."""
    before = snapshot(seeded)
    status, vol = seeded.api("POST", "/volumes/create", {"Name": "ok-after"})
    assert status == 201, vol
    try:
        after = snapshot(seeded)
        assert after["db_rows"] == before["db_rows"] + 1
        assert "ok-after" in after["disk"] and "ok-after" in after["api"]
    finally:
        assert seeded.http("DELETE", "/volumes/ok-after")[0] == 204
    assert snapshot(seeded) == before
