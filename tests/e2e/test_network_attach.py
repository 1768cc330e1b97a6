"""docker-py's network behaviours with containers (issue 9), against berth
and a private dockerd (20.10) in the same test: connect with aliases and
a static address, connect twice, disconnect (plain and forced, twice), a
stopped container connected then started, an address already taken, a
network removed while in use, prune and the dangling filter, a MAC
address given at create. What differs by nature (IDs, each engine's own
subnet) is left out; answers and status codes are compared.

dockerd runs with `--bridge=none --iptables=false`, so every container
here starts on a user network of its own (berth's default bridge is
covered by test_container_networks.py); subnets are 10.213.x.0/24.
"""

from __future__ import annotations


import pytest

from container_helpers import unique


docker = pytest.importorskip("docker")


class Side:
    """One engine: its docker-py client, image, and what a test made."""

    def __init__(self, name, daemon, image, octet):
        self.name = name
        self.client = docker.DockerClient(base_url=daemon.host, version="1.41")
        self.image = image
        self.octet = octet  # this engine's 10.213.<octet+i>.0/24 subnets
        self.containers, self.networks = [], []

    def network(self, index: int, **kw):
        third = self.octet + index
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=f"10.213.{third}.0/24", gateway=f"10.213.{third}.1")])
        net = self.client.networks.create(unique("att"), ipam=ipam, **kw)
        self.networks.append(net)
        return net

    def ip(self, index: int, host: int) -> str:
        return f"10.213.{self.octet + index}.{host}"

    def run(self, network, **kw):
        c = self.client.containers.run(self.image, "sleep 300", detach=True, name=unique("c"),
                                       network=network.name, **kw)
        self.containers.append(c)
        return c

    def cleanup(self):
        for c in self.containers:
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass
        for n in self.networks:
            try:
                n.remove()
            except docker.errors.APIError:
                pass
        self.client.close()


@pytest.fixture
def sides(daemon, image, dockerd, dockerd_image):
    both = [Side("berth", daemon, image, 120), Side("dockerd", dockerd, dockerd_image, 140)]
    try:
        yield both
    finally:
        for s in both:
            s.cleanup()


def status_of(call) -> int | None:
    """The status of the APIError ``call`` raises (None when it succeeds)."""
    try:
        call()
    except docker.errors.APIError as e:
        return e.status_code
    return None


def endpoint(side: Side, container, network) -> dict:
    return side.client.api.inspect_container(container.id)["NetworkSettings"]["Networks"][network.name]


def attached(side: Side, network) -> list[str]:
    return sorted(side.client.api.inspect_network(network.id)["Containers"])


def test_connect_with_aliases_and_a_static_address_then_disconnect(sides):
    seen = {}
    for s in sides:
        home, other = s.network(0), s.network(1)
        c = s.run(home)
        api = s.client.api
        api.connect_container_to_network(c.id, other.id, aliases=["foo", "bar"],
                                         ipv4_address=s.ip(1, 23))
        e = endpoint(s, c, other)
        assert {"foo", "bar"} <= set(e["Aliases"]), (s.name, e)
        assert e["IPAMConfig"]["IPv4Address"] == s.ip(1, 23), (s.name, e)
        assert e["IPAddress"] == s.ip(1, 23) and e["IPPrefixLen"] == 24, (s.name, e)
        assert e["Gateway"] == s.ip(1, 1), (s.name, e)
        assert attached(s, other) == [c.id]
        again = status_of(lambda: api.connect_container_to_network(c.id, other.id))
        api.disconnect_container_from_network(c.id, other.id)
        assert attached(s, other) == [], s.name
        assert other.name not in api.inspect_container(c.id)["NetworkSettings"]["Networks"]
        twice = status_of(lambda: api.disconnect_container_from_network(c.id, other.id))
        forced = status_of(lambda: api.disconnect_container_from_network(c.id, other.id, force=True))
        seen[s.name] = (again, twice, forced)
    print("codes", seen)
    assert seen["berth"] == seen["dockerd"], seen
    assert all(code is not None for code in seen["berth"]), seen


def test_a_stopped_container_connected_then_started_is_on_both(sides):
    for s in sides:
        home, other = s.network(0), s.network(1)
        c = s.client.containers.create(s.image, "sleep 300", name=unique("c"), network=home.name)
        s.containers.append(c)
        other.connect(c, aliases=["late"])
        other.connect(c)  # a stopped container connected twice: a silent 200 (Docker's)
        c.start()
        assert [x.id for x in s.client.networks.get(other.id).containers] == [c.id], s.name
        assert [x.id for x in s.client.networks.get(home.id).containers] == [c.id], s.name
        e = endpoint(s, c, other)
        assert e["IPAddress"].startswith(s.ip(1, 0)[:-1]) and "late" in e["Aliases"], (s.name, e)
        other.disconnect(c)
        assert s.client.networks.get(other.id).containers == [], s.name


def test_a_taken_static_address_and_a_network_in_use(sides):
    seen = {}
    for s in sides:
        net = s.network(0)
        first = s.run(net)
        ip = endpoint(s, first, net)["IPAddress"]
        second = s.client.containers.create(s.image, "sleep 300", name=unique("c"),
                                            network=net.name)
        s.containers.append(second)
        net.disconnect(second)
        net.connect(second, ipv4_address=ip)
        taken = status_of(second.start)
        in_use = status_of(net.remove)
        assert net.id in [n.id for n in s.client.networks.list()], s.name
        first.remove(force=True)
        second.remove(force=True)
        net.remove()
        seen[s.name] = (taken, in_use)
    print("codes", seen)
    assert seen["berth"] == seen["dockerd"], seen
    assert seen["berth"][1] == 403, seen


def test_prune_takes_only_networks_no_container_is_on(sides):
    for s in sides:
        used, idle = s.network(0), s.network(1)
        s.run(used)
        deleted = s.client.api.prune_networks()["NetworksDeleted"] or []
        assert idle.name in deleted and used.name not in deleted, (s.name, deleted)
        s.networks.remove(idle)


def test_the_dangling_filter_counts_running_containers(daemon, image, sides):
    """moby master's meaning (v25–v27 never looked at containers): a user
    network with no container is dangling; one in use is not."""
    s = sides[0]
    used, idle = s.network(0), s.network(1)
    s.run(used)
    dangling = [n.id for n in s.client.networks.list(filters={"dangling": True})]
    kept = [n.id for n in s.client.networks.list(filters={"dangling": False})]
    assert idle.id in dangling and used.id not in dangling
    assert used.id in kept and idle.id not in kept


def test_a_mac_address_given_at_create_is_the_interfaces(sides):
    s = sides[0]
    net = s.network(0)
    mac = "02:42:0a:d5:78:99"
    config = s.client.api.create_networking_config(
        {net.name: s.client.api.create_endpoint_config(mac_address=mac)})
    created = s.client.api.create_container(s.image, "sleep 300", name=unique("c"),
                                            networking_config=config,
                                            host_config=s.client.api.create_host_config(
                                                network_mode=net.name))
    c = s.client.containers.get(created["Id"])
    s.containers.append(c)
    assert endpoint(s, c, net)["MacAddress"] == mac
    c.start()
    out = s.client.containers.run(s.image, ["cat", "/sys/class/net/eth0/address"], remove=True,
                                  network_mode=f"container:{c.id}")
    assert out.decode().strip() == mac
