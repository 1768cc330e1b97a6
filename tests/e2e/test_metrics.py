"""Prometheus metrics (`--metrics-addr`, issue 16): scraped with the
`prometheus_client` package's own OpenMetrics parser, after a scripted
series of operations, the values are those `volume inspect`, `system df`,
`berth pool ls` and `docker ps` give."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from busybox_image import import_busybox, remove_all_containers

MIB = 1 << 20

pytestmark = pytest.mark.skipif(shutil.which("mkfs.xfs") is None, reason="xfsprogs (mkfs.xfs) missing")


def scrape(addr: str) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics_daemon(berth_factory):
    d = berth_factory(extra_args=["--thin-pool-size", "2G", "--metrics-addr", "127.0.0.1:0"]).start()
    d.metrics_addr = d.served_addr("metrics")
    d.image = import_busybox(d, "metrics-test:v1")
    yield d
    remove_all_containers(d)


def inspect(d, vol):
    code, body = d.api("GET", f"/volumes/{vol}")
    assert code == 200, body
    return body


def test_scraped_values_match_inspect_pool_ls_and_ps(metrics_daemon):
    d = metrics_daemon
    d.docker("volume", "create", "-d", "thin", "-o", "size=512M", "pg")
    d.docker("volume", "create", "-d", "thin", "-o", "size=1G", "spare")
    d.docker("volume", "create", "loc")
    d.docker("run", "--rm", "-v", "pg:/d", "-v", "loc:/l", d.image, "sh", "-c",
             "dd if=/dev/urandom of=/d/f bs=1M count=24 2>/dev/null; "
             "dd if=/dev/urandom of=/l/f bs=1M count=3 2>/dev/null; sync")
    d.berth_cli("volume", "snapshot", "create", "pg", "first")
    d.docker("run", "--rm", "-v", "pg:/d", d.image, "sh", "-c",
             "dd if=/dev/urandom of=/d/g bs=1M count=8 2>/dev/null; sync")
    d.berth_cli("volume", "snapshot", "create", "pg", "second")
    d.berth_cli("volume", "clone", "pg", "pg-copy")
    d.docker("run", "-d", "--name", "holder", "-v", "pg:/d", d.image, "sleep", "600")
    d.docker("run", "--name", "done", d.image, "true")
    d.docker("create", "--name", "fresh", d.image, "true")

    m = scrape(d.metrics_addr)

    for vol in ["pg", "spare", "pg-copy"]:
        status = inspect(d, vol)["Status"]
        labels = dict(volume=vol, driver="thin")
        assert value(m, "berth_volume_used_bytes", **labels) == status["Allocated"], vol
        assert value(m, "berth_volume_size_bytes", **labels) == status["SizeBytes"], vol
    code, snaps = d.api("GET", "/berth/v1/volumes/pg/snapshots")
    assert code == 200 and len(snaps) == 2
    assert value(m, "berth_volume_snapshots", volume="pg", driver="thin") == 2
    assert value(m, "berth_volume_snapshots", volume="spare", driver="thin") == 0
    assert value(m, "berth_volume_snapshots_allocated_bytes", volume="pg", driver="thin") == \
        sum(s["Allocated"] for s in snaps)
    df = d.api("GET", "/system/df?type=volume")[1]
    sizes = {v["Name"]: v["UsageData"]["Size"] for v in df["Volumes"]}
    refs = {v["Name"]: v["UsageData"]["RefCount"] for v in df["Volumes"]}
    # One running container holds pg: RefCount 1, as dockerd says.
    assert refs["pg"] == 1 and refs["spare"] == 0
    for vol, driver in [("pg", "thin"), ("spare", "thin"), ("loc", "local")]:
        assert value(m, "berth_volume_holders", volume=vol, driver=driver) == refs[vol], vol
    assert value(m, "berth_volume_used_bytes", volume="loc", driver="local") == sizes["loc"]
    assert sizes["loc"] >= 3 * MIB
    assert ("berth_volume_size_bytes", frozenset(dict(volume="loc", driver="local").items())) not in m
    assert value(m, "berth_volumes", driver="thin") == 3
    assert value(m, "berth_volumes", driver="local") == 1

    pools = json.loads(d.berth_cli("pool", "ls", "--json").stdout)
    (pool,) = [p for p in pools if p["Driver"] == "thin"]
    assert value(m, "berth_pool_size_bytes", driver="thin") == pool["Size"]
    assert value(m, "berth_pool_allocated_bytes", driver="thin") == pool["Allocated"]
    assert value(m, "berth_pool_free_bytes", driver="thin") == pool["Size"] - pool["Allocated"]
    assert value(m, "berth_pool_virtual_bytes", driver="thin") == pool["VirtualSize"]
    assert value(m, "berth_pool_overcommit_ratio", driver="thin") == pool["Overcommit"]
    assert value(m, "berth_pool_volumes", driver="thin") == pool["Volumes"] == 3
    assert value(m, "berth_pool_backing_file_allocated_bytes", driver="thin") == pool["BackingFileAllocated"]

    ps = d.docker("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.split("\n")
    states = {}
    for line in filter(None, ps):
        states[line.split()[1]] = states.get(line.split()[1], 0) + 1
    assert states == {"running": 1, "exited": 1, "created": 1}
    for state in ["created", "running", "exited", "removing", "dead"]:
        assert value(m, "berth_containers", state=state) == states.get(state, 0), state
    assert value(m, "berth_images") == len(d.api("GET", "/images/json")[1])

    # After removing: the volume is gone from the scrape, the pool shrinks.
    d.docker("volume", "rm", "spare")
    m = scrape(d.metrics_addr)
    assert ("berth_volume_used_bytes", frozenset(dict(volume="spare", driver="thin").items())) not in m
    assert value(m, "berth_volumes", driver="thin") == 2
    pool = [p for p in json.loads(d.berth_cli("pool", "ls", "--json").stdout) if p["Driver"] == "thin"][0]
    assert value(m, "berth_pool_virtual_bytes", driver="thin") == pool["VirtualSize"]


def test_requests_are_counted_by_route_status_and_in_flight(metrics_daemon):
    d = metrics_daemon
    d.docker("volume", "create", "counted")
    key = ("berth_api_requests_total",
           frozenset(dict(method="GET", route="/volumes/{name}", status="200").items()))
    before = scrape(d.metrics_addr).get(key, 0)
    for _ in range(7):
        assert d.api("GET", "/volumes/counted")[0] == 200
    assert d.api("GET", "/volumes/nope")[0] == 404
    assert d.api("GET", "/no/such/route")[0] == 404
    m = scrape(d.metrics_addr)
    assert m[key] == before + 7
    assert value(m, "berth_api_requests_total", method="GET", route="/volumes/{name}", status="404") == 1
    assert value(m, "berth_api_requests_total", method="GET", route="unmatched", status="404") >= 1
    assert value(m, "berth_api_request_duration_seconds_count", method="GET", route="/volumes/{name}") \
        == m[key] + 1

    # A streamed answer (`docker events`) is in flight until its client goes.
    events = subprocess.Popen(["docker", "-H", d.host, "events"], stdout=subprocess.DEVNULL,
                              env={"DOCKER_CONFIG": d.docker_config, "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 20
        flight = ("berth_api_requests_in_flight", frozenset(dict(method="GET", route="/events").items()))
        while scrape(d.metrics_addr).get(flight) != 1:
            assert time.monotonic() < deadline, "the events stream never showed in flight"
            time.sleep(0.1)
    finally:
        events.terminate()
        events.wait(10)
    deadline = time.monotonic() + 20
    while scrape(d.metrics_addr).get(flight) != 0:
        assert time.monotonic() < deadline, "the ended events stream stayed in flight"
        time.sleep(0.1)


def test_fifty_scrapes_at_once_while_volumes_change(metrics_daemon):
    d = metrics_daemon
    errors = []

    def scraper():
        try:
            for _ in range(4):
                scrape(d.metrics_addr)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=scraper) for _ in range(50)]
    for t in threads:
        t.start()
    for i in range(10):
        d.docker("volume", "create", "-d", "thin", "-o", "size=64M", f"churn{i}")
        d.docker("volume", "rm", f"churn{i}")
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    m = scrape(d.metrics_addr)
    assert m.get(("berth_volumes", frozenset(dict(driver="thin").items())), 0) == 0
    assert not [k for k in m if k[0] == "berth_volume_used_bytes" and ("driver", "thin") in k[1]]


def test_metrics_listener_serves_only_metrics(metrics_daemon):
    d = metrics_daemon
    for path in ["/", "/volumes", "/v1.47/version", "/metrics/../volumes"]:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://{d.metrics_addr}{path}", timeout=10)
        assert e.value.code == 404, path
    req = urllib.request.Request(f"http://{d.metrics_addr}/metrics", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code in (404, 405)


def test_bad_metrics_addresses_are_refused(berth_factory, tmp_path):
    d = berth_factory()
    bad = d.berth_cli("daemon", "--metrics-addr", "localhost", "--validate", check=False, host=False)
    assert bad.returncode != 0 and "metrics-addr" in bad.stderr, bad.stderr
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"metrics-addr": "not an address"}))
    bad = d.berth_cli("daemon", "--config-file", str(config), "--validate", check=False, host=False)
    assert bad.returncode == 1 and "metrics-addr" in bad.stderr and "HOST:PORT" in bad.stderr, bad.stderr
    config.write_text(json.dumps({"metrics-addr": "127.0.0.1:9323"}))
    good = d.berth_cli("daemon", "--config-file", str(config), "--validate", check=False, host=False)
    assert good.returncode == 0, good.stderr
    # A port already taken: the daemon says so and does not start.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = berth_factory(extra_args=["--metrics-addr", f"127.0.0.1:{port}"])
        proc = busy.spawn()
        assert proc.wait(30) == 1
        log = open(busy.log).read()
        assert f"listening for metrics on 127.0.0.1:{port}" in log, log
        assert not busy.running()
        assert not os.path.exists(busy.root), "a start refused for its port made the root"
    same = d.berth_cli("daemon", "--metrics-addr", "127.0.0.1:9323", "--web-addr", "127.0.0.1:9323",
                       "--validate", check=False, host=False)
    assert same.returncode == 1 and "cannot share port 9323" in same.stderr, same.stderr


def test_methods_are_a_closed_set_of_labels(metrics_daemon):
    d = metrics_daemon
    for method in ["METH1", "METH2", "X" * 4000]:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(d.sock)
            s.sendall(f"{method} /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            s.recv(4096)
    m = scrape(d.metrics_addr)
    methods = {dict(labels)["method"] for name, labels in m if name == "berth_api_requests_total"}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}, methods
    assert "other" in methods


def test_a_client_gone_before_the_answer_leaves_no_request_in_flight(metrics_daemon):
    d = metrics_daemon
    # sleep as the first process ignores SIGTERM: the stop waits its 5 s.
    d.docker("run", "-d", "--name", "slow", d.image, "sleep", "600")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(d.sock)
        s.sendall(b"POST /containers/slow/stop?t=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        time.sleep(1)
    flight = ("berth_api_requests_in_flight",
              frozenset(dict(method="POST", route="/containers/{id}/stop").items()))
    deadline = time.monotonic() + 15
    while scrape(d.metrics_addr).get(flight) != 0:
        assert time.monotonic() < deadline, "the abandoned stop stayed in flight"
        time.sleep(0.2)


def test_idle_connections_cannot_starve_the_daemon(metrics_daemon):
    d = metrics_daemon
    host, port = d.metrics_addr.rsplit(":", 1)
    pid = d.pid
    before = len(os.listdir(f"/proc/{pid}/fd"))
    idle = []
    try:
        # More than the cap; fewer than the cap plus the listen backlog (128),
        # past which the kernel drops a client's SYNs, not berth.
        for _ in range(150):
            c = socket.create_connection((host, int(port)), timeout=5)
            c.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
            idle.append(c)
        time.sleep(0.5)
        held = len(os.listdir(f"/proc/{pid}/fd")) - before
        assert held <= 64 + 8, held  # the cap, not one descriptor per client
        assert d.docker("volume", "create", "still-served").returncode == 0
        # The head timeout frees the slots: a scrape gets through.
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape(d.metrics_addr)
                break
            except OSError:
                assert time.monotonic() < deadline, "the metrics listener never recovered"
    finally:
        for c in idle:
            c.close()
