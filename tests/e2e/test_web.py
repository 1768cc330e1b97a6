"""The web view (`--web-addr`, issue 16): the volume list and a volume's
page rendered by headless Chromium with no way out to the network
(screenshots saved under target/test-artifacts/web/), text that looks
like markup shown as text, read-only unless `--web-admin`, and actions
that follow the API's rules and refuse other sites."""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import shutil
import subprocess
import time

import pytest

from browser import CHROMIUM, dom, screenshot
from busybox_image import import_busybox, remove_all_containers

MIB = 1 << 20
XSS = "<script>alert(1)</script>"

pytestmark = [
    pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs (mkfs.xfs) missing"),
]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing (scripts/setup --test)")


def web_daemon(berth_factory, admin: bool):
    args = ["--thin-pool-size", "2G", "--web-addr", "127.0.0.1:0", "--web-sample-interval", "1"]
    d = berth_factory(extra_args=args + (["--web-admin"] if admin else [])).start()
    d.web = d.served_addr("the web view")
    return d


@pytest.fixture
def admin_daemon(berth_factory):
    d = web_daemon(berth_factory, admin=True)
    yield d
    remove_all_containers(d)


@pytest.fixture
def readonly_daemon(berth_factory):
    d = web_daemon(berth_factory, admin=False)
    yield d
    remove_all_containers(d)


def web(d, method, path, body=None, headers=None, host=None):
    """(status, headers, parsed JSON or text) of one request to the web view."""
    conn = http.client.HTTPConnection(d.web, timeout=30)
    try:
        all_headers = {"Host": host or d.web, **(headers or {})}
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        if data is not None and "Content-Type" not in all_headers:
            all_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=all_headers)
        r = conn.getresponse()
        raw = r.read().decode()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return r.status, dict(r.getheaders()), parsed
    finally:
        conn.close()


def token(d):
    """The admin token, from the root-only file the daemon wrote."""
    path = os.path.join(d.root, "web-admin.token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    status, _, session = web(d, "GET", "/web/v1/session")
    assert status == 200 and session == {"Admin": True, "TokenFile": path}, session
    return open(path).read().strip()


def snapshots(d, vol):
    code, body = d.api("GET", f"/berth/v1/volumes/{vol}/snapshots")
    assert code == 200, body
    return sorted(s["Name"] for s in body)


def volume_names(d):
    return sorted(d.list_volumes())


def wait_for_samples(d, vol, n):
    deadline = time.monotonic() + 30
    while True:
        status, _, page = web(d, "GET", f"/web/v1/volumes/{vol}")
        if status == 200 and len(page["UsedHistory"]) >= n:
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.3)


@needs_chromium
def test_list_and_volume_page_render_with_plots_and_markup_as_text(admin_daemon):
    d = admin_daemon
    image = import_busybox(d, "web-test:v1")
    d.docker("volume", "create", "-d", "thin", "-o", "size=512M", "--label", f"note={XSS}",
             "--label", "app=postgres", "pgdata")
    d.docker("volume", "create", "--label", f"{XSS}=x", "uploads")
    d.docker("run", "-d", "--name", "db", "-v", "pgdata:/d", image, "sh", "-c",
             "for i in 1 2 3 4 5 6; do dd if=/dev/urandom of=/d/f$i bs=1M count=12 2>/dev/null; "
             "sync; sleep 0.7; done; sleep 600")
    d.berth_cli("volume", "snapshot", "create", "pgdata", "before-upgrade")
    page = wait_for_samples(d, "pgdata", 5)
    assert page["UsedHistory"][-1]["Used"] > page["UsedHistory"][0]["Used"], page["UsedHistory"]

    listing = dom(f"http://{d.web}/")
    assert 'data-loaded="1"' in listing, listing[-3000:]
    assert 'data-volume="pgdata"' in listing and 'data-volume="uploads"' in listing
    # Shown as text: escaped in the DOM, and no element made of it.
    assert "note=&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;=x" in listing
    assert len(re.findall(r"<script\b", listing)) == 1, "a script element besides app.js"
    assert "db" in listing and "(running)" in listing
    assert '<svg class="plot"' in listing and "<path" in listing

    volume = dom(f"http://{d.web}/volumes/pgdata")
    assert 'data-loaded="1"' in volume, volume[-3000:]
    assert "<h1>pgdata</h1>" in volume
    assert "before-upgrade" in volume and "Take snapshot" in volume
    assert "note=&lt;script&gt;alert(1)&lt;/script&gt;" in volume
    assert len(re.findall(r"<script\b", volume)) == 1
    paths = re.findall(r'<path d="([^"]+)" class="s0"', volume)
    assert paths and paths[0].count("L") >= 4, paths  # the used-bytes line has its samples

    for url, name in [(f"http://{d.web}/", "volumes.png"), (f"http://{d.web}/volumes/pgdata", "volume-pgdata.png")]:
        path = screenshot(url, name)
        with open(path, "rb") as f:
            png = f.read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, (path, len(png))


def test_pages_load_nothing_from_elsewhere(readonly_daemon):
    d = readonly_daemon
    for path, kind in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css"),
                       ("/volumes/x", "text/html")]:
        status, headers, body = web(d, "GET", path)
        assert status == 200 and headers["content-type"].startswith(kind), (path, headers)
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        # The SVG namespace is a name, never fetched; nothing else points out.
        urls = set(re.findall(r"https?://[^\s\"'`)]+", body)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path, urls)
        assert "innerHTML" not in body and "insertAdjacentHTML" not in body and "document.write" not in body
    assert web(d, "GET", "/nope")[0] == 404


@needs_chromium
def test_read_only_by_default(readonly_daemon):
    d = readonly_daemon
    d.docker("volume", "create", "-d", "thin", "-o", "size=64M", "ro")
    status, _, session = web(d, "GET", "/web/v1/session")
    assert status == 200 and session == {"Admin": False, "TokenFile": None}
    assert not os.path.exists(os.path.join(d.root, "web-admin.token"))
    for path, body in [("/web/v1/volumes/ro/snapshots", {}), ("/web/v1/volumes/ro/clone", {"Target": "ro2"})]:
        status, _, answer = web(d, "POST", path, body, headers={"X-Berth-Token": "guess"})
        assert status == 403 and "read-only" in answer["message"], answer
    assert snapshots(d, "ro") == [] and volume_names(d) == ["ro"]
    page = dom(f"http://{d.web}/volumes/ro")
    assert 'data-loaded="1"' in page and "Read-only view" in page and "<button" not in page


def test_actions_follow_the_apis_rules_and_refuse_other_sites(admin_daemon):
    d = admin_daemon
    d.docker("volume", "create", "-d", "thin", "-o", "size=64M", "src")
    d.docker("volume", "create", "-d", "thin", "-o", "size=64M", "taken")
    d.docker("volume", "create", "plain")
    good = {"X-Berth-Token": token(d)}
    before = volume_names(d)

    refused = [
        # (path, body, headers, host, status, words)
        ("/web/v1/volumes/src/snapshots", {}, {}, None, 403, "X-Berth-Token"),
        ("/web/v1/volumes/src/snapshots", {}, {"X-Berth-Token": "0" * 48}, None, 403, "X-Berth-Token"),
        ("/web/v1/volumes/src/snapshots", {}, good, "evil.example:80", 421, ""),
        ("/web/v1/volumes/src/snapshots", {}, good, "attacker.example:" + d.web.split(":")[1], 421, ""),
        ("/web/v1/volumes/src/snapshots", "{not json", good, None, 400, ""),
        ("/web/v1/volumes/src/snapshots", {"Name": "../escape"}, good, None, 400, ""),
        ("/web/v1/volumes/missing/snapshots", {}, good, None, 404, ""),
        ("/web/v1/volumes/plain/snapshots", {}, good, None, 400, ""),
        ("/web/v1/volumes/src/clone", {}, good, None, 400, "Target"),
        ("/web/v1/volumes/src/clone", {"Target": "taken"}, good, None, 409, ""),
        ("/web/v1/volumes/src/clone", {"Target": "bad/name"}, good, None, 400, ""),
        ("/web/v1/volumes/missing/clone", {"Target": "new"}, good, None, 404, ""),
    ]
    for path, body, headers, host, status, words in refused:
        got, _, answer = web(d, "POST", path, body, headers=headers, host=host)
        assert got == status, (path, body, host, got, answer)
        assert words in json.dumps(answer), (path, answer)
    # The same answers as the API's for the same mistakes.
    api_status, _ = d.api("POST", "/berth/v1/volumes/src/clone", {"Target": "taken"})
    assert api_status == 409
    assert snapshots(d, "src") == [] and volume_names(d) == before

    status, _, answer = web(d, "POST", "/web/v1/volumes/src/snapshots", {"Name": "nightly"}, headers=good)
    assert status == 201 and answer == {"Name": "nightly"}
    assert snapshots(d, "src") == ["nightly"]
    # Snapshots named by the time, taken in the same instant: all made.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda _: web(d, "POST", "/web/v1/volumes/src/snapshots", {"Name": None}, headers=good), range(8)))
    assert [a[0] for a in answers] == [201] * 8, answers
    assert len({a[2]["Name"] for a in answers}) == 8
    assert len(snapshots(d, "src")) == 9
    status, _, answer = web(d, "POST", "/web/v1/volumes/src/clone", {"Target": "src-copy"}, headers=good)
    assert status == 201 and answer["Name"] == "src-copy" and answer["Driver"] == "thin"
    assert volume_names(d) == sorted(before + ["src-copy"])
    # No CORS: a page of another site reads nothing of the view.
    status, headers, _ = web(d, "GET", "/web/v1/overview", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    # Another user on the host may look, but not act: the token is root's.
    nobody = subprocess.run(
        ["su", "nobody", "-s", "/bin/sh", "-c",
         f"cat {d.root}/web-admin.token; python3 -c \"import urllib.request as u; "
         f"print(u.urlopen('http://{d.web}/web/v1/session').read().decode())\""],
        capture_output=True, text=True, timeout=60)
    assert "Permission denied" in nobody.stderr and '"Admin":true' in nobody.stdout, nobody
    assert token(d) not in nobody.stdout
    # A new start, a new token: the old one acts no more.
    old = token(d)
    d.restart()
    d.web = d.served_addr("the web view")
    status, _, _ = web(d, "POST", "/web/v1/volumes/src/snapshots", {}, headers={"X-Berth-Token": old})
    assert status == 403 and token(d) != old


def test_bad_web_settings_are_refused(berth_factory, tmp_path):
    d = berth_factory()
    out = d.berth_cli("daemon", "--web-admin", "--validate", check=False, host=False)
    assert out.returncode == 1 and "--web-admin" in out.stderr and "--web-addr" in out.stderr, out.stderr
    out = d.berth_cli("daemon", "--web-addr", "nowhere", "--validate", check=False, host=False)
    assert out.returncode != 0 and "web-addr" in out.stderr, out.stderr
    out = d.berth_cli("daemon", "--web-addr", "127.0.0.1:0", "--web-sample-interval", "0", "--validate",
                      check=False, host=False)
    assert out.returncode != 0 and "web-sample-interval" in out.stderr, out.stderr
    config = tmp_path / "daemon.json"
    for bad, words in [({"web-addr": "x"}, "HOST:PORT"), ({"web-admin": "yes", "web-addr": "127.0.0.1:1"}, "true or false"),
                       ({"web-sample-interval": 0}, "at least 1")]:
        config.write_text(json.dumps(bad))
        out = d.berth_cli("daemon", "--config-file", str(config), "--validate", check=False, host=False)
        assert out.returncode == 1 and words in out.stderr, (bad, out.stderr)
    config.write_text(json.dumps({"web-addr": "127.0.0.1:8088", "web-admin": True, "web-sample-interval": 5}))
    out = d.berth_cli("daemon", "--config-file", str(config), "--validate", check=False, host=False)
    assert out.returncode == 0, out.stderr
