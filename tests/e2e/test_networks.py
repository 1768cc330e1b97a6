"""Networks as objects (issue 9, first step): `docker network
ls|inspect|create|rm|prune` against berth, shapes and answers compared with
a private dockerd in the same run. (Containers joining networks, ports and
DNS come in the next steps.) Every network a test makes on dockerd has an
explicit subnet in 10.213.0.0/16, so dockerd's bridges never touch another
address of the host; they are removed by the test."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid

import pytest

from container_helpers import unique

# What differs by nature between two engines' networks.
VOLATILE = {"Id", "Created"}


def inspect(d, name) -> dict:
    return json.loads(d.docker("network", "inspect", name).stdout)[0]


def quoted(filters: dict) -> str:
    return urllib.parse.quote(json.dumps(filters))


def comparable(n: dict) -> dict:
    return {k: v for k, v in n.items() if k not in VOLATILE}


@pytest.fixture
def on_both(berth, dockerd):
    """Runs the same `docker network create` on both; removes what it made."""
    made = []

    def create(*args):
        name = unique("net")
        for d in (berth, dockerd):
            d.docker("network", "create", *args, name)
        made.append(name)
        return name

    yield create
    for name in made:
        for d in (berth, dockerd):
            d.docker("network", "rm", name, check=False)


def test_predefined_networks(berth_factory):
    # The default bridge as a daemon without --bip has it (no container
    # runs here, so sharing berth0 with another daemon of the run is fine).
    berth = berth_factory(extra_args=["--bridge", "berth0"]).start()
    listed = berth.docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout.split("\n")
    assert {"bridge bridge local", "host host local", "none null local"} <= set(listed), listed
    bridge = inspect(berth, "bridge")
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert bridge["Options"]["com.docker.network.bridge.name"] == "berth0"
    (config,) = bridge["IPAM"]["Config"]
    assert config["Subnet"].endswith("/16") and config["Gateway"].endswith(".1"), config
    for name in ["host", "none"]:
        n = inspect(berth, name)
        assert n["IPAM"] == {"Driver": "default", "Options": None, "Config": None}, n
        assert n["Containers"] == {} and n["Options"] == {} and n["Labels"] == {}
    # Stable across restarts: the same IDs.
    ids = {n: inspect(berth, n)["Id"] for n in ["bridge", "host", "none"]}
    berth.restart()
    assert {n: inspect(berth, n)["Id"] for n in ids} == ids


def test_bridge_and_bip_set_the_default_bridge(berth_factory):
    # Not in 10.215.0.0/16: that is conftest.private_bridge's, whose daemons
    # (also on another pytest-xdist worker) may hold any /24 of it.
    berth = berth_factory(extra_args=["--bridge", "btbiptest", "--bip", "10.216.250.1/24"]).start()
    bridge = inspect(berth, "bridge")
    assert bridge["Options"]["com.docker.network.bridge.name"] == "btbiptest"
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.216.250.0/24", "Gateway": "10.216.250.1"}]
    bad = berth_factory(extra_args=["--bip", "10.216.250.0/24"])
    with pytest.raises(AssertionError, match="exited"):
        bad.start()


def test_inspect_matches_dockerd(berth, dockerd, on_both):
    name = on_both("--subnet", "10.213.1.0/24", "--gateway", "10.213.1.1", "--ip-range", "10.213.1.128/25",
                   "--aux-address", "printer=10.213.1.5", "--label", "team=db", "--label", "empty",
                   "-o", "com.docker.network.bridge.enable_icc=false", "--internal", "--attachable")
    ours, theirs = inspect(berth, name), inspect(dockerd, name)
    assert list(ours) == list(theirs), "field order"
    assert comparable(ours) == comparable(theirs)
    assert len(ours["Id"]) == 64
    plain = on_both("--subnet", "10.213.2.0/24")
    ours, theirs = inspect(berth, plain), inspect(dockerd, plain)
    assert comparable(ours) == comparable(theirs)
    assert ours["IPAM"]["Config"] == [{"Subnet": "10.213.2.0/24"}]  # the gateway not given is not shown


def test_a_network_without_subnet_gets_a_free_default_pool(berth):
    a, b = unique("auto"), unique("auto")
    berth.docker("network", "create", a)
    berth.docker("network", "create", b)
    try:
        subnets = {n: inspect(berth, n)["IPAM"]["Config"][0] for n in ["bridge", a, b]}
        blocks = [c["Subnet"] for c in subnets.values()]
        assert len(set(blocks)) == 3, subnets
        for c in subnets.values():
            assert c["Gateway"] == c["Subnet"].split("/")[0][:-1] + "1", c
    finally:
        berth.docker("network", "rm", a, b)


def test_lookup_by_id_prefix_and_name(berth):
    name = unique("find")
    nid = berth.docker("network", "create", name).stdout.strip()
    try:
        assert len(nid) == 64
        for ref in [nid, nid[:12], nid[:5], name]:
            assert inspect(berth, ref)["Name"] == name, ref
        code, body = berth.api("GET", "/networks/nope-" + uuid.uuid4().hex)
        assert code == 404 and body["message"].startswith("network nope-")
        assert body["message"].endswith(" not found")
    finally:
        berth.docker("network", "rm", nid)
    assert berth.api("GET", f"/networks/{nid}")[0] == 404


def ipam(subnet, gateway="", ip_range=""):
    config = {"Subnet": subnet}
    if gateway:
        config["Gateway"] = gateway
    if ip_range:
        config["IPRange"] = ip_range
    return {"IPAM": {"Driver": "default", "Config": [config]}}


@pytest.mark.parametrize("body, status, words", [
    (ipam("10.213.3.0/24", gateway="10.213.4.1"), 400,
     "invalid network config:\ninvalid gateway 10.213.4.1: parent subnet 10.213.3.0/24 doesn't contain this address"),
    (ipam("10.213.3.7/24"), 400,
     "invalid network config:\ninvalid subnet 10.213.3.7/24: it should be 10.213.3.0/24"),
    (ipam("10.213.3.0/24", ip_range="10.213.0.0/16"), 400,
     "invalid network config:\ninvalid ip-range 10.213.0.0/16: CIDR block is bigger than its parent subnet 10.213.3.0/24"),
    (ipam("nonsense"), 400, "invalid network config:\ninvalid subnet nonsense: invalid CIDR block notation"),
    ({"Driver": "host"}, 403, 'only one instance of "host" network is allowed'),
    ({"Driver": "nosuchdriver"}, 404, 'plugin "nosuchdriver" not found'),
    ({"Driver": "overlay"}, 403, "This node is not a swarm manager."),
    ({"Scope": "swarm"}, 403, "cannot create a swarm scoped network when swarm is not active"),
])
def test_bad_creates_are_refused_and_change_nothing(berth, body, status, words):
    before = berth.docker("network", "ls", "-q").stdout
    code, answer = berth.api("POST", "/networks/create", {"Name": unique("bad"), **body})
    assert code == status and answer["message"].startswith(words), answer
    assert berth.docker("network", "ls", "-q").stdout == before


def test_the_cli_reports_what_berth_refuses(berth):
    p = berth.docker("network", "create", "-d", "nosuchdriver", unique("bad"), check=False)
    assert p.returncode != 0 and 'plugin "nosuchdriver" not found' in p.stderr, p.stderr
    p = berth.docker("network", "create", "--subnet", "10.213.3.7/24", unique("bad"), check=False)
    assert p.returncode != 0 and "it should be 10.213.3.0/24" in p.stderr, p.stderr


def test_bad_cidr_and_overlaps_against_dockerd(berth, dockerd, on_both):
    on_both("--subnet", "10.213.5.0/24")
    for d in (berth, dockerd):
        p = d.docker("network", "create", "--subnet", "10.213.5.128/25", unique("over"), check=False)
        assert p.returncode != 0 and "Pool overlaps with other one on this address space" in p.stderr, (d, p.stderr)
        code, body = d.api("POST", "/networks/create",
                           {"Name": unique("over"), "IPAM": {"Config": [{"Subnet": "10.213.5.0/26"}]}})
        assert code == 403, (d, code, body)
        p = d.docker("network", "create", "--subnet", "10.213.6.0/33", unique("cidr"), check=False)
        assert p.returncode != 0 and "10.213.6.0/33" in p.stderr, (d, p.stderr)


def test_name_clashes_and_predefined_names(berth, dockerd, on_both):
    name = on_both("--subnet", "10.213.7.0/24")
    for d in (berth, dockerd):
        code, body = d.api("POST", "/networks/create",
                           {"Name": name, "CheckDuplicate": True, "IPAM": {"Config": [{"Subnet": "10.213.8.0/24"}]}})
        assert code == 409 and body["message"] == f"network with name {name} already exists", (d, body)
        code, body = d.api("POST", "/networks/create", {"Name": "host"})
        assert code == 403 and body["message"].startswith("operation is not permitted on predefined host network"), (d, body)
        code, body = d.api("DELETE", "/networks/host")
        assert code == 403 and body["message"] == "host is a pre-defined network and cannot be removed", (d, body)
    code, body = berth.api("POST", "/networks/create", {"Name": "  "})
    assert code == 400 and body["message"].startswith("invalid name"), body
    code, body = berth.api("POST", "/networks/create", {"Name": unique("x"), "IPAM": "nope"})
    assert code == 400, body


def test_list_filters_match_dockerd(berth, dockerd, on_both):
    tag = uuid.uuid4().hex[:6]
    a = on_both("--subnet", "10.213.9.0/24", "--label", f"suite={tag}", "--label", "tier=web")
    b = on_both("--subnet", "10.213.10.0/24", "--label", f"suite={tag}")
    fmt = ["--format", "{{.Name}}"]

    def names(d, *filters):
        args = [x for f in filters for x in ("--filter", f)]
        return sorted(d.docker("network", "ls", *args, *fmt).stdout.split())

    for filters in [(f"label=suite={tag}",), (f"label=suite={tag}", "label=tier=web"),
                    (f"label=suite={tag}", "driver=bridge"), (f"name={a[:7]}", f"label=suite={tag}"),
                    ("type=builtin", "name=host"), (f"label=suite={tag}", "scope=local")]:
        assert names(berth, *filters) == names(dockerd, *filters), filters
    assert names(berth, f"label=suite={tag}") == sorted([a, b])
    nid = inspect(berth, a)["Id"]
    assert names(berth, f"id={nid[:10]}") == [a]
    assert "custom" not in names(berth, "type=builtin")
    code, body = berth.api("GET", "/networks?filters=" + quoted({"colour": ["red"]}))
    assert code == 400 and body["message"] == "invalid filter 'colour'", body


def test_prune_removes_unused_user_networks_by_label(berth, dockerd, on_both):
    tag = uuid.uuid4().hex[:6]
    on_both("--subnet", "10.213.11.0/24", "--label", f"prune={tag}")
    keep = on_both("--subnet", "10.213.12.0/24")
    for d in (berth, dockerd):
        code, body = d.api("POST", "/networks/prune?filters=" + quoted({"label": [f"prune={tag}"]}))
        assert code == 200 and len(body["NetworksDeleted"]) == 1, (d, body)
        assert body["NetworksDeleted"][0].startswith("net-")
        code, body = d.api("POST", "/networks/prune?filters=" + quoted({"label": [f"prune={tag}"]}))
        assert code == 200 and body["NetworksDeleted"] is None, (d, body)
    assert inspect(berth, keep)["Name"] == keep
    assert {"bridge", "host", "none"} <= set(berth.docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    code, body = berth.api("POST", "/networks/prune?filters=" + quoted({"dangling": ["true"]}))
    assert code == 400 and body["message"] == "invalid filter 'dangling'", body


def test_docker_py_network_calls(berth):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=berth.host, version="1.45")
    name = unique("py")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
        subnet="172.28.0.0/16", iprange="172.28.5.0/24", gateway="172.28.5.254",
        aux_addresses={"a": "172.28.1.5", "b": "172.28.1.6", "c": "172.28.1.7"})])
    net = client.networks.create(name, ipam=ipam, labels={"foo": "bar"})
    try:
        attrs = client.api.inspect_network(net.id)
        assert attrs["IPAM"]["Options"] is None
        assert attrs["IPAM"]["Config"] == [{"Subnet": "172.28.0.0/16", "IPRange": "172.28.5.0/24",
                                            "Gateway": "172.28.5.254",
                                            "AuxiliaryAddresses": {"a": "172.28.1.5", "b": "172.28.1.6",
                                                                   "c": "172.28.1.7"}}]
        assert client.networks.get(net.id).name == name and net.attrs["Labels"] == {"foo": "bar"}
        assert [n.id for n in client.networks.list(names=[name])] == [net.id]
        assert [n["Id"] for n in client.api.networks(ids=[net.id[:8]])] == [net.id]
        assert client.networks.list(ids=["fdhjklfdfdshjkfds"]) == []
        with pytest.raises(docker.errors.APIError):
            client.networks.create(name, check_duplicate=True)
        spaced = client.networks.create("test 01-" + uuid.uuid4().hex[:4])
        assert client.api.inspect_network(spaced.name)["Name"] == spaced.name
        client.api.remove_network(spaced.name)
    finally:
        net.remove()
    assert name not in [n.name for n in client.networks.list()]


def test_network_events_match_dockerd(berth, dockerd):
    name = unique("ev")
    seen = {}
    for d in (berth, dockerd):
        start = int(time.time()) - 1
        d.docker("network", "create", "--subnet", "10.213.13.0/24", name)
        d.docker("network", "rm", name)
        out = d.docker("events", "--since", str(start), "--until", str(int(time.time()) + 1),
                       "--filter", "type=network", "--filter", f"network={name}",
                       "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}}",
                       timeout=30).stdout
        seen[d] = [line for line in out.split("\n") if line]
    assert seen[berth] == [f"network create {name} bridge", f"network destroy {name} bridge"]
    assert seen[berth] == seen[dockerd]
