"""Containers on networks (issue 9, step 2): the default bridge, published
ports (TCP, UDP, random, -P), port conflicts that leave nothing half set up,
DNS on user networks (aardvark-dns), endpoints across kill -9 and restart,
`network rm` while in use, bad input, and a docker-compose 1.29 project.

One berth daemon and busybox image per module (fixtures ``daemon``,
``image``); every test names what it makes with a unique prefix and removes
it, also when it fails. Busybox has no UDP listener (nc has no -u, no
udpsvd), so the UDP test listens with the host's Python inside the
container's network namespace (``nsenter --net=<SandboxKey>``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from busybox_image import import_busybox
from container_helpers import wait_until
from conftest import _docker_env, log_tail, run_cmd

# With scripts/test's two pytest-xdist workers, the files of group "netpools"
# (test_readme.py, test_container_networks.py, test_service.py,
# test_daemon_config.py) never run at the same time: its networks made with
# no --subnet (containers run on them) take their subnets from
# Docker's default address pools (172.17.0.0/16 and up): a daemon takes the
# first one no route of the host has, so two at once take the same one.
pytestmark = pytest.mark.xdist_group("netpools")

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PAGE = "hello from the container\n"


# --- small helpers ------------------------------------------------------------


def free_ports(n=1, kind=socket.SOCK_STREAM) -> list[int]:
    """``n`` distinct host ports free right now (bound to port 0 together)."""
    socks = [socket.socket(socket.AF_INET, kind) for _ in range(n)]
    for s in socks:
        s.bind(("0.0.0.0", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def in_ephemeral_range(port) -> bool:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = map(int, f.read().split())
    return lo <= int(port) <= hi


def inspect(daemon, name) -> dict:
    [c] = json.loads(daemon.docker("inspect", name).stdout)
    return c


def network(daemon, name="bridge") -> dict:
    return json.loads(daemon.docker("network", "inspect", name).stdout)[0]


def fetch(url, timeout=2.0) -> str | None:
    try:
        with NO_PROXY.open(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def wait_for_page(url, text=PAGE, timeout=20.0):
    wait_until(lambda: text in (fetch(url) or ""), timeout, f"{url} to answer {text!r}")


def sh(*argv, check=True) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def rules_naming(*words) -> list[str]:
    """Lines of `iptables -t nat -S` that mention any of ``words``."""
    return [r for r in sh("iptables", "-t", "nat", "-S").splitlines() if any(w in r for w in words)]


def chain_hash(network_id) -> str:
    """netavark's NETAVARK-<hash> / NETAVARK-DN-<hash> chain suffix."""
    return hashlib.sha512(network_id.encode()).hexdigest()[:13].upper()


def veths(master=None) -> dict[int, str]:
    """{ifindex: name} of the host's veth links (with ``master``: those on
    that bridge; other daemons on the machine use bridges of their own)."""
    out = sh("ip", "-o", "link", "show", *(["master", master] if master else []), "type", "veth", check=False)
    return {int(i): n for i, n in re.findall(r"^(\d+): ([^:@]+)", out, re.M)}


def peer_index(sandbox_key) -> int:
    """The host ifindex of the veth whose peer is eth0 in ``sandbox_key``."""
    line = sh("nsenter", f"--net={sandbox_key}", "ip", "-o", "link", "show", "eth0")
    return int(re.search(r"eth0@if(\d+)", line).group(1))


def netns_files(daemon) -> list[str]:
    """Namespace files under the root but the anchors of networks that
    still exist (each bridge network in use keeps one until it is
    removed, as Docker keeps its bridges); an anchor of a removed network
    counts."""
    folder = os.path.join(daemon.root, "netns")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    networks = set(daemon.docker("network", "ls", "-q", "--no-trunc").stdout.split())
    return [n for n in names if n.removeprefix("network-") not in networks]


def host_ipv4() -> str | None:
    """The machine's own IPv4 address on its default route (not loopback,
    not a container bridge), or None."""
    out = sh("ip", "-4", "-o", "route", "get", "192.0.2.1", check=False)
    m = re.search(r"\bsrc (\S+)", out)
    return m.group(1) if m and not ipaddress.ip_address(m.group(1)).is_loopback else None


def ports_column(daemon, name) -> str | None:
    out = daemon.docker("ps", "-a", "--format", "{{.Names}}\t{{.Ports}}").stdout
    return dict(line.split("\t", 1) for line in out.splitlines()).get(name)


def container_ids(daemon) -> set[str]:
    return set(daemon.docker("ps", "-a", "-q", "--no-trunc").stdout.split())


def assert_no_trace(daemon, cid, peer=None):
    """No netns file, no nat rule, no `ip netns` entry, no veth of ``cid``."""
    assert cid not in netns_files(daemon), netns_files(daemon)
    assert rules_naming(cid) == []
    assert cid not in sh("ip", "netns", "list")
    if peer is not None:
        assert peer not in veths(), (peer, veths())


class Scope:
    """Unique names for one test; the containers (forced, with volumes),
    networks and volumes made under them are removed at the end."""

    def __init__(self, daemon):
        self.daemon, self.prefix, self.n = daemon, "n" + uuid.uuid4().hex[:10], 0
        self.networks: list[str] = []
        self.volumes: list[str] = []

    def __call__(self, what="c"):
        self.n += 1
        return f"{self.prefix}-{what}{self.n}"

    def network(self, *args) -> str:
        self.networks.append(self("net"))
        self.daemon.docker("network", "create", *args, self.networks[-1])
        return self.networks[-1]

    def remove_containers(self):
        status, body = self.daemon.api("GET", "/containers/json?all=1")
        for c in body if status == 200 else []:
            if any(n.lstrip("/").startswith(self.prefix) for n in c.get("Names") or []):
                self.daemon.api("DELETE", f"/containers/{c['Id']}?force=1&v=1")

    def cleanup(self):
        self.remove_containers()
        for n in self.networks:
            self.daemon.api("DELETE", f"/networks/{n}")
        for v in self.volumes:
            self.daemon.api("DELETE", f"/volumes/{v}?force=1")


@pytest.fixture
def scope(daemon):
    s = Scope(daemon)
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def www(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text(PAGE)
    return str(tmp_path / "www")


def httpd(www, image) -> list[str]:
    return ["-v", f"{www}:/www", image, "httpd", "-f", "-p", "80", "-h", "/www"]


# --- the default bridge -------------------------------------------------------


def test_default_bridge_address_hosts_and_gateway(daemon, image, scope):
    (config,) = network(daemon)["IPAM"]["Config"]
    subnet, gateway = ipaddress.ip_network(config["Subnet"]), config["Gateway"]
    out = daemon.docker("run", "--rm", "--name", scope(), image, "sh", "-c",
                        "ip -4 addr show eth0; echo ==; hostname; echo ==; cat /etc/hosts; "
                        f"echo ==; ping -c1 -W2 {gateway}").stdout
    addr, hostname, hosts, ping = out.split("==\n")
    m = re.search(r"inet (\S+)/(\d+)", addr)
    assert m, addr
    assert ipaddress.ip_address(m.group(1)) in subnet and int(m.group(2)) == subnet.prefixlen, (addr, subnet)
    assert hosts.startswith("127.0.0.1\tlocalhost\n"), hosts
    assert hosts.rstrip("\n").split("\n")[-1] == f"{m.group(1)}\t{hostname.strip()}", hosts
    assert "1 packets received" in ping, ping


# --- published ports ------------------------------------------------------------


def test_published_port_answers_on_loopback_and_host_address(daemon, image, scope, www):
    addr = host_ipv4()
    if addr is None:
        pytest.skip("the machine has no non-loopback IPv4 address")
    [port] = free_ports()
    name = scope()
    daemon.docker("run", "-d", "--name", name, "-p", f"{port}:80", *httpd(www, image))
    for host in ("127.0.0.1", addr):
        wait_for_page(f"http://{host}:{port}/")
    assert daemon.docker("port", name).stdout.splitlines() == [f"80/tcp -> 0.0.0.0:{port}"]
    assert daemon.docker("port", name, "80").stdout.splitlines() == [f"0.0.0.0:{port}"]
    assert ports_column(daemon, name) == f"0.0.0.0:{port}->80/tcp"
    c = inspect(daemon, name)
    ns = c["NetworkSettings"]
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert ns["SandboxKey"] == os.path.join(daemon.root, "netns", c["Id"])
    assert os.path.exists(ns["SandboxKey"])
    ip = ns["Networks"]["bridge"]["IPAddress"]
    assert ns["IPAddress"] == ip and ns["MacAddress"] == "02:42:" + ":".join(
        f"{int(b):02x}" for b in ip.split(".")), ns


# Listens on 53/udp, appends what it gets to argv[1] and echoes it back.
UDP_LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
open(sys.argv[1] + ".ready", "w").close()
while True:
    data, peer = s.recvfrom(512)
    open(sys.argv[1], "ab").write(data + b"\n")
    s.sendto(b"echo:" + data, peer)
"""


def test_published_udp_port_reaches_the_container(daemon, image, scope, tmp_path):
    [port] = free_ports(kind=socket.SOCK_DGRAM)
    name = scope()
    daemon.docker("run", "-d", "--name", name, "-p", f"{port}:53/udp", image, "sleep", "300")
    ns = inspect(daemon, name)["NetworkSettings"]
    assert ns["Ports"] == {"53/udp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert daemon.docker("port", name).stdout.splitlines() == [f"53/udp -> 0.0.0.0:{port}"]
    assert ports_column(daemon, name) == f"0.0.0.0:{port}->53/udp"
    got = str(tmp_path / "got")
    listener = subprocess.Popen(["nsenter", f"--net={ns['SandboxKey']}", sys.executable, "-c",
                                 UDP_LISTENER, got])
    try:
        wait_until(lambda: os.path.exists(got + ".ready") or listener.poll() is not None,
                   what="the listener in the container's namespace")
        assert listener.poll() is None, "the listener could not bind 53/udp in the container"
        message = f"datagram-{uuid.uuid4().hex[:6]}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)

            def answered():
                s.sendto(message, ("127.0.0.1", port))
                try:
                    return s.recvfrom(512)[0]
                except socket.timeout:
                    return None

            assert wait_until(answered, what="a reply through the udp port") == b"echo:" + message
        with open(got, "rb") as f:
            assert message + b"\n" in f.read()
    finally:
        listener.kill()
        listener.wait()


def test_random_host_port_on_loopback(daemon, image, scope, www):
    name = scope()
    daemon.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", *httpd(www, image))
    [binding] = inspect(daemon, name)["NetworkSettings"]["Ports"]["80/tcp"]
    assert binding["HostIp"] == "127.0.0.1", binding
    port = int(binding["HostPort"])
    assert in_ephemeral_range(port), port
    assert daemon.docker("port", name).stdout.splitlines() == [f"80/tcp -> 127.0.0.1:{port}"]
    wait_for_page(f"http://127.0.0.1:{port}/")


def test_publish_all_publishes_the_images_exposed_port(daemon, scope, www):
    ref = import_busybox(daemon, f"{scope.prefix}-expose:v1", "EXPOSE 80")
    try:
        name = scope()
        daemon.docker("run", "-d", "--name", name, "-P", *httpd(www, ref))
        c = inspect(daemon, name)
        assert c["Config"]["ExposedPorts"] == {"80/tcp": {}}, c["Config"]
        assert list(c["NetworkSettings"]["Ports"]) == ["80/tcp"], c["NetworkSettings"]["Ports"]
        [binding] = c["NetworkSettings"]["Ports"]["80/tcp"]
        assert binding["HostIp"] == "0.0.0.0" and in_ephemeral_range(binding["HostPort"]), binding
        wait_for_page(f"http://127.0.0.1:{binding['HostPort']}/")
    finally:
        scope.remove_containers()
        daemon.docker("rmi", ref, check=False)


# --- conflicts leave nothing half set up ----------------------------------------------


def test_port_held_by_another_container_fails_the_start_cleanly(daemon, image, scope, www):
    [port] = free_ports()
    first, second = scope(), scope()
    daemon.docker("run", "-d", "--name", first, "-p", f"{port}:80", *httpd(www, image))
    wait_for_page(f"http://127.0.0.1:{port}/")
    bridge = network(daemon)["Options"]["com.docker.network.bridge.name"]
    links = veths(bridge)
    for attempt in (["run", "-d", "--name", second, "-p", f"{port}:80", image, "sleep", "300"],
                    ["start", second]):
        p = daemon.docker(*attempt, check=False)
        assert p.returncode != 0, p.stdout
        assert f"driver failed programming external connectivity on endpoint {second} (" in p.stderr, p.stderr
        assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in p.stderr, p.stderr
        c = inspect(daemon, second)
        assert c["State"]["Status"] == "created", c["State"]
        assert_no_trace(daemon, c["Id"])
        assert veths(bridge) == links
    wait_for_page(f"http://127.0.0.1:{port}/")
    assert ports_column(daemon, first) == f"0.0.0.0:{port}->80/tcp"


def test_port_held_by_a_host_process_fails_the_start_cleanly(daemon, image, scope, www):
    [port] = free_ports()
    name = scope()
    bridge = network(daemon)["Options"]["com.docker.network.bridge.name"]
    links = veths(bridge)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", port))
        holder.listen()
        p = daemon.docker("run", "-d", "--name", name, "-p", f"{port}:80", *httpd(www, image), check=False)
        assert p.returncode != 0, p.stdout
        assert (f"driver failed programming external connectivity on endpoint {name} (" in p.stderr
                and f"failed to bind port 0.0.0.0:{port}/tcp: listen tcp4 0.0.0.0:{port}: "
                    "bind: address already in use" in p.stderr), p.stderr
        c = inspect(daemon, name)
        assert c["State"]["Status"] == "created", c["State"]
        assert_no_trace(daemon, c["Id"])
        assert veths(bridge) == links
    # Once the host lets the port go, the same container starts and gets it.
    daemon.docker("start", name)
    wait_for_page(f"http://127.0.0.1:{port}/")


# --- DNS on user networks ---------------------------------------------------------


def test_user_network_dns_by_name_alias_and_short_id(daemon, image, scope, www):
    net = scope.network()
    db, alias = scope("db"), scope("alias")
    daemon.docker("run", "-d", "--name", db, "--network", net, "--network-alias", alias, *httpd(www, image))
    c = inspect(daemon, db)
    endpoint = c["NetworkSettings"]["Networks"][net]
    short = c["Id"][:12]
    assert endpoint["DNSNames"] == [db, alias, short], endpoint
    ip, gateway = endpoint["IPAddress"], endpoint["Gateway"]
    script = (f"for n in {db} {alias} {short}; do echo \"== $n\"; nslookup $n; echo \"rc=$?\"; done; "
              "echo '== resolv'; cat /etc/resolv.conf; echo '== wget'; "
              f"for i in $(seq 50); do wget -q -O- http://{db}:80/ && break; sleep 0.2; done")
    out = daemon.docker("run", "--rm", "--network", net, image, "sh", "-c", script).stdout
    blocks = {b.split("\n", 1)[0]: b.split("\n", 1)[1] for b in out.split("== ")[1:]}
    for n in (db, alias, short):
        assert blocks[n].rstrip().endswith("rc=0"), blocks[n]
        assert re.search(rf"Name:\s+{n}\S*\s+Address:\s+{re.escape(ip)}\n", blocks[n]), (ip, blocks[n])
    assert [l for l in blocks["resolv"].splitlines() if l.startswith("nameserver")] == [f"nameserver {gateway}"]
    assert blocks["wget"] == PAGE
    # The default bridge has no name resolution between containers.
    other = scope("plain")
    daemon.docker("run", "-d", "--name", other, image, "sleep", "300")
    assert inspect(daemon, other)["NetworkSettings"]["Networks"]["bridge"]["DNSNames"] is None
    p = daemon.docker("run", "--rm", image, "nslookup", other, check=False)
    assert p.returncode != 0, p.stdout


# --- endpoints across kill -9 and restart -----------------------------------------


def test_ports_survive_kill9_and_rm_leaves_nothing(daemon, image, scope, www):
    port, port2 = free_ports(2)
    name, dies = scope(), scope()
    daemon.docker("run", "-d", "--name", name, "-p", f"{port}:80", *httpd(www, image))
    daemon.docker("run", "-d", "--name", dies, "-p", f"{port2}:80", image, "sleep", "300")
    url = f"http://127.0.0.1:{port}/"
    wait_for_page(url)
    c, gone = inspect(daemon, name), inspect(daemon, dies)
    cid, sandbox = c["Id"], c["NetworkSettings"]["SandboxKey"]
    peer, gone_peer = peer_index(sandbox), peer_index(gone["NetworkSettings"]["SandboxKey"])
    assert peer in veths()
    daemon.kill9()
    try:
        wait_for_page(url)  # the daemon is down: the container still serves
        os.kill(gone["State"]["Pid"], signal.SIGKILL)  # and this one ends meanwhile
    finally:
        daemon.start()
    # At start-up the endpoint of the container that ended is torn down.
    wait_until(lambda: inspect(daemon, dies)["State"]["Status"] == "exited", what=f"{dies} to be exited")
    wait_until(lambda: gone["Id"] not in netns_files(daemon), 10, f"the netns file of {dies} to go")
    assert_no_trace(daemon, gone["Id"], gone_peer)
    wait_for_page(url)
    assert ports_column(daemon, name) == f"0.0.0.0:{port}->80/tcp"
    assert inspect(daemon, name)["State"]["Running"] is True
    assert inspect(daemon, name)["NetworkSettings"]["Ports"] == c["NetworkSettings"]["Ports"]
    daemon.docker("rm", "-f", name)
    assert_no_trace(daemon, cid, peer)
    assert netns_files(daemon) == []
    assert not os.path.exists(sandbox)


def test_clean_restart_keeps_running_ports_and_restarts_stopped_ones(daemon, image, scope, www):
    running, stopped = scope(), scope()
    p1, p2 = free_ports(2)
    for name, port in ((running, p1), (stopped, p2)):
        daemon.docker("run", "-d", "--name", name, "-p", f"{port}:80", *httpd(www, image))
        wait_for_page(f"http://127.0.0.1:{port}/")
    daemon.docker("stop", "-t", "1", stopped)
    wait_until(lambda: fetch(f"http://127.0.0.1:{p2}/") is None, what="the stopped port to close")
    # Waiters hear of the exit before the network teardown ends (its rules
    # go first, the namespace file last): wait for the whole of it.
    cid = inspect(daemon, stopped)["Id"]
    wait_until(lambda: cid not in netns_files(daemon), what="the stopped container's netns")
    assert_no_trace(daemon, cid)
    daemon.restart()
    wait_for_page(f"http://127.0.0.1:{p1}/")
    daemon.docker("start", stopped)
    wait_for_page(f"http://127.0.0.1:{p2}/")
    assert daemon.docker("port", stopped).stdout.splitlines() == [f"80/tcp -> 0.0.0.0:{p2}"]
    assert ports_column(daemon, running) == f"0.0.0.0:{p1}->80/tcp"


# --- network rm and dangling ------------------------------------------------------


def test_network_rm_is_refused_while_a_container_runs_on_it(daemon, image, scope):
    net, idle = scope.network(), scope.network()
    name = scope()
    daemon.docker("run", "-d", "--name", name, "--network", net, image, "sleep", "300")
    c, n = inspect(daemon, name), network(daemon, net)
    nid, members = n["Id"], n["Containers"]
    assert list(members) == [c["Id"]] and members[c["Id"]]["Name"] == name, members
    expected = (f"error while removing network: network {net} id {nid} has active endpoints "
                f'(name:"{name}" id:"{c["Id"][:12]}")')
    p = daemon.docker("network", "rm", net, check=False)
    assert p.returncode != 0 and expected in p.stderr, p.stderr
    status, body = daemon.api("DELETE", f"/networks/{net}")
    assert status == 403 and body["message"] == expected, (status, body)
    listed = daemon.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert net in listed and idle in listed
    dangling = daemon.docker("network", "ls", "--filter", "dangling=true", "--format", "{{.Name}}").stdout.split()
    assert idle in dangling and net not in dangling, dangling
    assert not {"bridge", "host", "none"} & set(dangling), dangling
    used = daemon.docker("network", "ls", "--filter", "dangling=false", "--format", "{{.Name}}").stdout.split()
    assert net in used and idle not in used, used
    daemon.docker("stop", "-t", "1", name)
    daemon.docker("network", "rm", net, idle)
    listed = daemon.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert net not in listed and idle not in listed


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["-p", "80/xyz"], "invalid proto: xyz"),
    (["-p", "abc:80"], "invalid hostPort: abc"),
    (["--ip", "172.17.0.50"], "user specified IP address is supported on user defined networks only"),
    (["--network-alias", "foo"], "network-scoped aliases are only supported for user-defined networks"),
])
def test_bad_network_options_are_refused_and_leave_no_container(daemon, image, scope, args, words):
    before = container_ids(daemon)
    p = daemon.docker("run", "-d", "--name", scope(), *args, image, "sleep", "300", check=False)
    assert p.returncode != 0 and words in p.stderr, p.stderr
    assert container_ids(daemon) == before


@pytest.mark.parametrize("body, status, words", [
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "abc"}]}}}, 400, 'invalid port specification: "abc"'),
    ({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["foo"]}}}}, 400,
     "network-scoped alias is supported only for containers in user defined networks"),
    ({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.50"}}}}}, 400,
     "user specified IP address is supported on user defined networks only"),
])
def test_bad_network_settings_through_the_api(daemon, image, scope, body, status, words):
    """What the CLI checks itself never reaches the daemon: the raw API."""
    before = container_ids(daemon)
    code, answer = daemon.api("POST", f"/containers/create?name={scope()}",
                              {"Image": image, "Cmd": ["true"], **body})
    assert code == status and words in answer["message"], (code, answer)
    assert container_ids(daemon) == before


def test_a_missing_network_fails_the_start_as_dockerd_does(daemon, image, scope):
    """dockerd makes the container and fails its start with a 404 (a 404 at
    create would make the docker CLI try to pull the image); the container
    stays Created, and nothing of a network is left."""
    name = scope()
    p = daemon.docker("run", "-d", "--name", name, "--network", "nosuchnet", image, "true",
                      check=False)
    assert p.returncode != 0 and "network nosuchnet not found" in p.stderr, p.stderr
    assert "Unable to find image" not in p.stderr, p.stderr
    c = inspect(daemon, name)
    assert c["State"]["Status"] == "created", c["State"]
    assert c["HostConfig"]["NetworkMode"] == "nosuchnet"
    assert not os.path.exists(os.path.join(daemon.root, "netns", c["Id"]))
    code, answer = daemon.api("POST", f"/containers/{c['Id']}/start")
    assert (code, answer["message"]) == (404, "network nosuchnet not found"), (code, answer)


# --- docker-compose 1.29 ----------------------------------------------------------

COMPOSE = """\
version: "3.8"
services:
  db:
    image: {image}
    command: ["sh", "-c", "echo dbdata > /data/index.html && exec httpd -f -p 80 -h /data"]
    volumes:
      - data:/data
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www; while true; do wget -q -O /tmp/p http://db/ && mv /tmp/p /www/index.html; sleep 0.5; done & exec httpd -f -p 80 -h /www"]
    ports:
      - "{port}:80"
    depends_on:
      - db
volumes:
  data: {{}}
"""


def test_compose_project_reaches_db_by_name_and_down_leaves_nothing(daemon, image, scope, tmp_path):
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed")
    [port] = free_ports()
    project = scope.prefix
    scope.networks.append(f"{project}_default")
    scope.volumes.append(f"{project}_data")
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(image=image, port=port))
    env = _docker_env(config_dir=daemon.docker_config, extra={"DOCKER_HOST": daemon.host})

    def compose(*args, check=True):
        argv = ["docker-compose", "-p", project, "-f", str(tmp_path / "docker-compose.yml"), *args]
        try:
            return run_cmd(argv, env, check, timeout=180)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- berth log ---\n{log_tail(daemon.log, 40)}") from None

    chains = None
    try:
        compose("up", "-d")
        wait_for_page(f"http://127.0.0.1:{port}/", "dbdata", timeout=30)
        ids = daemon.docker("ps", "-q", "--no-trunc", "--filter",
                            f"label=com.docker.compose.project={project}").stdout.split()
        assert len(ids) == 2, ids
        peers = [peer_index(inspect(daemon, i)["NetworkSettings"]["SandboxKey"]) for i in ids]
        net_id = network(daemon, f"{project}_default")["Id"]
        chains = chain_hash(net_id)
        bridge = f"br-{net_id[:12]}"
        assert sh("ip", "-o", "link", "show", bridge, check=False).strip(), bridge
        compose("down", "-v", "-t", "1")
        assert not [n for n in daemon.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
                    if n.startswith(project)]
        assert not [v for v in daemon.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
                    if v.startswith(project)]
        for cid, peer in zip(ids, peers):
            assert_no_trace(daemon, cid, peer)
        assert netns_files(daemon) == []
        assert not container_ids(daemon) & set(ids)
        assert rules_naming(chains) == []  # the network's NETAVARK-<hash> chains
        # The network's bridge went with it (and its anchor's namespace).
        assert not sh("ip", "-o", "link", "show", bridge, check=False).strip(), bridge
        assert not os.path.exists(os.path.join(daemon.root, "netns", f"network-{net_id}"))
    finally:
        compose("down", "-v", "-t", "1", check=False)
        if chains and rules_naming(chains) == [f"-N NETAVARK-DN-{chains}"]:  # left empty: drop it
            sh("iptables", "-t", "nat", "-X", f"NETAVARK-DN-{chains}", check=False)


def test_a_clean_stop_takes_idle_networks_down_and_a_start_brings_them_back(berth_factory):
    """Bridges and NAT rules live while containers are on a network (and
    across a restart for those still running); a clean stop with none
    leaves no bridge and no rule of the daemon's networks."""
    d = berth_factory().start()
    ref = import_busybox(d)
    name = f"idle-{uuid.uuid4().hex[:8]}"
    d.docker("network", "create", "--subnet", "10.213.201.0/24", name)
    default = network(d)
    bridges = [default["Options"]["com.docker.network.bridge.name"],
               f"br-{network(d, name)['Id'][:12]}"]
    subnets = [default["IPAM"]["Config"][0]["Subnet"], "10.213.201.0/24"]

    def traces():
        rules = sh("iptables", "-S") + sh("iptables", "-t", "nat", "-S")
        links = sh("ip", "-o", "link", "show")
        return ([b for b in bridges if f" {b}:" in links]
                + [r for r in rules.splitlines() if any(s in r for s in subnets)])

    d.docker("run", "--rm", "--network", name, ref, "true")
    d.docker("run", "--rm", "-p", "80", ref, "true")
    assert len(traces()) >= 2, traces()  # both bridges (and their rules) are up
    d.stop()
    assert traces() == []
    assert os.listdir(os.path.join(d.root, "netns")) == []
    d.start()
    out = d.docker("run", "--rm", "--network", name, ref, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "10.213.201.2/24" in out, out


def test_a_full_subnet_refuses_the_next_container_and_frees_its_address(daemon, image, scope):
    """A /30 holds one container (no address to spare for the network's
    anchor); the next start is Docker's error; the address comes back."""
    net = scope.network("--subnet", "10.213.202.0/30")
    first = scope()
    out = daemon.docker("run", "--name", first, "--network", net, image,
                        "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "10.213.202.2/30" in out, out
    running = scope()
    daemon.docker("run", "-d", "--name", running, "--network", net, image, "sleep", "300")
    p = daemon.docker("run", "--rm", "--network", net, image, "true", check=False)
    assert p.returncode != 0 and "no available IPv4 addresses on this network's address pools" in p.stderr, p.stderr
    daemon.docker("rm", "-f", running)
    daemon.docker("run", "--rm", "--network", net, image, "true")


# --- what an outside tester found ---------------------------------------------


@pytest.mark.parametrize("alias", ["zz\nfeedbeef 10.213.203.77  d12", "has space", "a,b", "x" * 256])
def test_aliases_that_are_no_dns_names_are_refused(daemon, image, scope, alias):
    """aardvark-dns keeps one container a line, fields split by spaces and
    names by commas: such an alias would forge or break its records."""
    net = scope.network()
    code, body = daemon.api("POST", f"/containers/create?name={scope()}", {
        "Image": image, "Cmd": ["true"], "HostConfig": {"NetworkMode": net},
        "NetworkingConfig": {"EndpointsConfig": {net: {"Aliases": [alias]}}}})
    assert code == 400 and "invalid network alias" in body["message"], (code, body)
    name = scope()
    daemon.docker("run", "-d", "--name", name, "--network", net, image, "sleep", "300")
    code, body = daemon.api("POST", f"/networks/{net}/connect",
                            {"Container": name, "EndpointConfig": {"Aliases": [alias]}})
    assert code == 400 and "invalid network alias" in body["message"], (code, body)


def test_a_hostname_that_is_no_dns_name_breaks_no_dns(daemon, image, scope):
    net = scope.network()
    db = scope()
    daemon.docker("run", "-d", "--name", db, "--network", net, image, "sleep", "300")
    odd = scope()
    code, body = daemon.api("POST", f"/containers/create?name={odd}", {
        "Image": image, "Cmd": ["sleep", "300"], "Hostname": "h x\nfeed 10.213.9.9 " + db,
        "HostConfig": {"NetworkMode": net}})
    assert code == 201, body
    daemon.docker("start", odd)
    out = daemon.docker("run", "--rm", "--network", net, image, "nslookup", db).stdout
    ip = inspect(daemon, db)["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert f"Address: {ip}" in out and "10.213.9.9" not in out, out


@pytest.mark.parametrize("bindings", [{"80/tcp": "19507"}, {"80/tcp": ["19507"]},
                                      {"80/tcp": [{"HostPort": 19508}]},
                                      {"80/tcp": [{"HostIp": "::1", "HostPort": "19509"}]}])
def test_port_bindings_of_another_shape_are_refused_not_made_random(daemon, image, scope, bindings):
    before = container_ids(daemon)
    code, body = daemon.api("POST", f"/containers/create?name={scope()}", {
        "Image": image, "Cmd": ["true"], "HostConfig": {"PortBindings": bindings}})
    assert code == 400, (code, body)
    assert container_ids(daemon) == before


def test_joining_its_own_network_namespace_is_refused(daemon, image, scope):
    name = scope()
    p = daemon.docker("run", "--name", name, "--network", f"container:{name}", image, "true",
                      check=False)
    assert p.returncode != 0 and "cannot join own network" in p.stderr, p.stderr


def test_connects_cut_by_kill9_are_settled_at_restart(berth_factory):
    """kill -9 while 12 connects run at once: after the restart, what the
    network lists, what each container lists and what its namespace holds
    agree; every container can then be disconnected or connected again."""
    d = berth_factory().start()
    ref = import_busybox(d)
    net = f"cut-{uuid.uuid4().hex[:6]}"
    d.docker("network", "create", "--subnet", "10.213.204.0/24", net)
    names = [f"{net}-c{i}" for i in range(12)]
    for n in names:
        d.docker("run", "-d", "--name", n, ref, "sleep", "600")
    env = _docker_env(config_dir=d.docker_config)
    procs = [subprocess.Popen([shutil.which("docker") or "docker", "-H", d.host, "network", "connect",
                               "--alias", f"al-{n}", net, n], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in names]
    time.sleep(0.4)
    d.kill9()
    for p in procs:
        p.wait(timeout=60)
    d.start()
    listed = set(json.loads(d.docker("network", "inspect", net).stdout)[0]["Containers"])
    for n in names:
        c = inspect(d, n)
        on = net in c["NetworkSettings"]["Networks"]
        assert (c["Id"] in listed) == on, (n, on, listed)
        addrs = sh("nsenter", f"--net={c['NetworkSettings']['SandboxKey']}", "ip", "-4", "-o", "addr")
        if on:
            ip = c["NetworkSettings"]["Networks"][net]["IPAddress"]
            assert ip and f" {ip}/24 " in addrs, (n, ip, addrs)
            d.docker("network", "disconnect", net, n)
        else:
            assert "10.213.204." not in addrs, (n, addrs)
            d.docker("network", "connect", net, n)
            d.docker("network", "disconnect", net, n)
    d.docker("network", "rm", net)
