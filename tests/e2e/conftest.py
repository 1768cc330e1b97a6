"""Fixtures for berth's end-to-end tests.

Every daemon (berth or a private dockerd) runs on its own temporary folder
made with ``tempfile.mkdtemp(dir="/tmp")`` (unix socket paths must stay under
108 bytes), so tests can run in parallel. Cleanup always runs, also when a
test fails: the daemon is stopped by its PID (SIGTERM, then SIGKILL), every
mount under its folder is lazily unmounted (deepest first), and the folder
is removed.

scripts/test runs the suite on two pytest-xdist workers (``-n 2 --dist
loadgroup``): every test without an ``xdist_group`` mark gets its module's
name as its group (``pytest_collection_modifyitems`` below), so a file runs
whole on one worker; files that touch the same host-wide things (the default
address pools and ``berth0``: group "netpools") share a group and never run
at the same time. test_setup.py (a namespace copy of every mount of the
host for about a minute) runs alone afterwards.

Environment:
  BERTH_BIN     the berth binary (default: <repo>/target/debug/berth)
  DOCKER_BIN    the docker CLI (default: docker on PATH)
  DOCKERD_BIN   dockerd for the differential test (default: dockerd on PATH)
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest
import uuid

REPO = Path(__file__).resolve().parents[2]
BERTH_BIN = os.environ.get("BERTH_BIN") or str(REPO / "target" / "debug" / "berth")
DOCKER_BIN = os.environ.get("DOCKER_BIN") or shutil.which("docker") or "docker"

# Environment variables of the docker CLI that must not leak in from the
# caller's shell: each test says exactly which daemon and version it wants.
_DOCKER_ENV_DROP = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_API_VERSION",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS",
    "BERTH_HOST",
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RFC3339_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


# ---------------------------------------------------------------------------
# Raw HTTP over a unix socket
# ---------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX."""

    def __init__(self, path: str, timeout: float = 30.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def unix_http(sock_path, method, path, body=None, headers=None, timeout=30.0):
    """One request on a new connection. Returns (status, headers, body bytes).

    ``body`` may be a dict/list (sent as JSON with Content-Type
    application/json unless ``headers`` name a Content-Type), str or bytes
    (sent as is), or None (no body).
    """
    hdrs = dict(headers or {})
    data = None
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
    elif isinstance(body, str):
        data = body.encode()
    elif body is not None:
        data = bytes(body)
    conn = UnixHTTPConnection(str(sock_path), timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, resp.headers, payload
    finally:
        conn.close()


def error_message(headers, body: bytes) -> str:
    """The message of an error response: JSON {"message"} or plain text."""
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
    if ctype == "application/json":
        try:
            return json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            pass
    return body.decode(errors="replace").strip()


# ---------------------------------------------------------------------------
# Processes, mounts, temp folders
# ---------------------------------------------------------------------------


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    base = os.path.realpath(str(path))
    found = []
    try:
        with open("/proc/self/mountinfo", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 5:
                    continue
                mp = _unescape_mountinfo(fields[4])
                if mp == base or mp.startswith(base + "/"):
                    found.append(mp)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: (p.count("/"), len(p)), reverse=True)


def unmount_all_under(path) -> None:
    for _ in range(3):  # stacked mounts need several passes
        mps = mounts_under(path)
        if not mps:
            return
        for mp in mps:
            subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


def remove_tree(path) -> None:
    if path and os.path.exists(path):
        unmount_all_under(path)
        shutil.rmtree(path, ignore_errors=True)


def stop_pid(proc: subprocess.Popen | None, timeout: float = 15.0) -> int | None:
    """SIGTERM the process we started, wait, SIGKILL as a fallback."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=timeout)


def pids_with_cmdline_containing(needle: str) -> list[int]:
    """PIDs whose command line mentions ``needle`` (a unique temp path): the
    path itself or a path below it, never a longer name it begins
    (``/tmp/berth-ab`` does not match ``/tmp/berth-abc/root``)."""
    pattern = re.compile(re.escape(needle.rstrip("/")) + r"(?=/|\s|$)")
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern.search(cmd):
            out.append(int(entry))
    return out


def log_tail(path, lines: int = 80) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _docker_env(api_version=None, config_dir=None, extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _DOCKER_ENV_DROP}
    if api_version:
        env["DOCKER_API_VERSION"] = str(api_version)
    if config_dir:
        env["DOCKER_CONFIG"] = str(config_dir)  # no user config, no pruneFilters
    env["DOCKER_CLI_HINTS"] = "false"
    if extra:
        env.update(extra)
    return env


def run_cmd(argv, env, check, input=None, timeout=120):
    proc = subprocess.run(argv, env=env, input=input, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed (exit {proc.returncode}): {' '.join(argv)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    return proc


# ---------------------------------------------------------------------------
# berth
# ---------------------------------------------------------------------------


class ApiClient:
    """Raw API calls on a daemon's socket (``self.sock``)."""

    sock: str

    def http(self, method, path, body=None, headers=None, timeout=30.0):
        """Raw HTTP on a new connection: (status, headers, body bytes)."""
        return unix_http(self.sock, method, path, body, headers, timeout)

    def api(self, method, path, body=None, headers=None, timeout=30.0):
        """Raw HTTP; the body decoded as JSON when there is one."""
        status, hdrs, data = self.http(method, path, body, headers, timeout)
        parsed = None
        if data.strip():
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = data.decode(errors="replace")
        return status, parsed


# The third octets of 10.215.x.0/24 this process gave out: ever, and to
# daemons not cleaned up yet (BerthDaemon.cleanup gives them back).
_BRIDGES_GIVEN: set[int] = set()
_BRIDGES_LIVE: set[int] = set()


def _routed_blocks() -> str:
    return subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout


def _worker_slice() -> range:
    """The third octets of 10.215.x.0/24 this pytest process may use: all of
    them in a plain run; with pytest-xdist, worker gwN of M gets the Nth of
    M equal slices (two workers: 0-127 and 128-255), so daemons of two
    workers never pick the same subnet or bridge name."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1), index + 1)
    size = 256 // count
    assert size >= 1, f"{count} workers: too many for 10.215.0.0/16's /24s"
    return range(index * size, (index + 1) * size)


def private_bridge() -> tuple[str, str]:
    """A bridge name and a /24 of 10.215.0.0/16 no route and no other
    daemon of this run has (10.215.0.0/16 is for these bridges only: no
    test uses an address of it otherwise). Third octets never given out
    first, then those of daemons already cleaned up."""
    routes = _routed_blocks()
    mine = _worker_slice()
    for taken in (_BRIDGES_GIVEN, _BRIDGES_LIVE):
        free = [n for n in mine if n not in taken and f"10.215.{n}.0/24" not in routes]
        if free:
            n = free[int.from_bytes(os.urandom(2), "big") % len(free)]
            _BRIDGES_GIVEN.add(n)
            _BRIDGES_LIVE.add(n)
            return f"bt{os.getpid() % 10000}x{n}", f"10.215.{n}.1/24"
    raise AssertionError(f"no free 10.215.x.0/24 (x in {mine.start}-{mine.stop - 1}) "
                         "for a test daemon's bridge")


class BerthDaemon(ApiClient):
    """One `berth daemon` on a private socket and root.

    ``root`` may be shared with another BerthDaemon (to test the root lock);
    by default it is ``<tmpdir>/root``.
    """

    def __init__(self, root=None, bin_path=None, extra_args=()):
        self.bin = bin_path or BERTH_BIN
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="berth-", dir="/tmp")
        self.root = str(root) if root else os.path.join(self.dir, "root")
        self.owns_root = root is None
        self.sock = os.path.join(self.dir, "b.sock")
        self.pidfile = os.path.join(self.dir, "b.pid")
        self.log = os.path.join(self.dir, "daemon.log")
        self.host = "unix://" + self.sock
        self.docker_config = os.path.join(self.dir, "docker-config")
        os.makedirs(self.docker_config, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        # Environment added to the daemon's at the next spawn (e.g. a crash
        # point, BERTH_CRASH_AT).
        self.extra_env: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------

    def argv(self):
        # No /etc/berth/daemon.json of the machine's: a test says what it wants.
        config = [] if "--config-file" in self.extra_args else ["--config-file", "/dev/null"]
        return [self.bin, "daemon", "--host", self.host, "--root", self.root,
                "--pidfile", self.pidfile, *config, *self.default_bridge_args(), *self.extra_args]

    def default_bridge_args(self) -> list[str]:
        """A default bridge of this daemon's own (`--bridge`, `--bip`), so
        daemons alive at once never share `berth0` and its addresses. A
        test that sets either itself, or uses a config file, gets none."""
        if any(a in self.extra_args for a in ("--bridge", "--bip", "--config-file")):
            return []
        if not hasattr(self, "_bridge"):
            self._bridge = private_bridge()
        return ["--bridge", self._bridge[0], "--bip", self._bridge[1]]

    def spawn(self) -> subprocess.Popen:
        """Starts the process without waiting for it to be ready."""
        if not os.path.exists(self.bin):
            pytest.fail(f"berth binary not found at {self.bin} (build it, or set BERTH_BIN)")
        logf = open(self.log, "ab")
        try:
            logf.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(self.argv())}\n".encode())
            logf.flush()
            env = {**os.environ, **self.extra_env} if self.extra_env else None
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf, env=env)
        finally:
            logf.close()
        return self.proc

    def start(self, timeout: float = 30.0):
        """Starts the daemon and waits until GET /_ping answers 200."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("berth daemon already running")
        self.spawn()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"berth daemon exited with {self.proc.returncode} during start-up\n"
                    f"--- log ---\n{log_tail(self.log)}")
            if os.path.exists(self.sock):
                try:
                    status, _, _ = unix_http(self.sock, "GET", "/_ping", timeout=2)
                    if status == 200:
                        return self
                    last = f"status {status}"
                except OSError as e:  # stale socket of a killed daemon, not yet bound
                    last = repr(e)
            time.sleep(0.02)
        self.kill9()
        raise AssertionError(f"berth daemon not ready after {timeout}s ({last})\n"
                             f"--- log ---\n{log_tail(self.log)}")

    def stop(self, timeout: float = 15.0):
        """SIGTERM, wait, SIGKILL fallback. Returns the exit status."""
        rc = stop_pid(self.proc, timeout)
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)
        return self.proc.returncode if self.proc else None

    def restart(self, timeout: float = 30.0):
        self.stop()
        return self.start(timeout)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        try:
            self.release_networks()
            self.stop()
        finally:
            # remove_tree unmounts everything under the folder first. A
            # borrowed root (owns_root False) lies outside it and is left to
            # its owner.
            remove_tree(self.dir)
            # Its bridge and subnet may be given to a later daemon (once).
            if hasattr(self, "_bridge") and not getattr(self, "_bridge_given_back", False):
                self._bridge_given_back = True
                _BRIDGES_LIVE.discard(int(self._bridge[1].split(".")[2]))

    def release_networks(self):
        """Containers removed, so that the daemon's clean stop takes its
        networks' bridges and NAT rules down (netavark's are host-wide: a
        test must not leave them). A daemon that is not running but set
        networks up is started again for that."""
        netns = os.path.join(self.root, "netns")
        if not self.owns_root or not os.path.isdir(netns) or not os.listdir(netns):
            return
        from busybox_image import remove_all_containers
        try:
            if not self.running():
                self.start()
            remove_all_containers(self)
        except Exception as e:  # cleanup goes on: the stop and the removal
            print(f"\n--- could not release the networks of {self.root}: {e!r}")

    # -- clients -------------------------------------------------------

    def served_addr(self, what: str) -> str:
        """HOST:PORT of a side listener (``metrics``, ``the web view``)
        started with port 0, as the daemon's log names it."""
        found = re.findall(rf"serving {re.escape(what)} addr=(\S+)", open(self.log).read())
        assert found, f"the daemon serves no {what}\n{log_tail(self.log)}"
        return found[-1]

    def docker(self, *args, api_version=None, check=True, input=None, env=None, timeout=120):
        argv = [DOCKER_BIN, "-H", self.host, *map(str, args)]
        return run_cmd(argv, _docker_env(api_version, self.docker_config, env), check, input, timeout)

    def berth_cli(self, *args, check=True, input=None, env=None, host=True, timeout=120):
        argv = [self.bin] + (["-H", self.host] if host else []) + list(map(str, args))
        base = {k: v for k, v in os.environ.items() if k not in _DOCKER_ENV_DROP}
        if env:
            base.update(env)
        return run_cmd(argv, base, check, input, timeout)

    # -- state ---------------------------------------------------------

    @property
    def volumes_dir(self):
        return os.path.join(self.root, "volumes")

    @property
    def db_path(self):
        return os.path.join(self.root, "berth.db")

    def volume_dirs(self) -> set[str]:
        """Folders under ROOT/volumes (not the trash, ROOT/volumes/.trash,
        nor the spare folders made ahead for creates, ROOT/volumes/.spare)."""
        try:
            return {e.name for e in os.scandir(self.volumes_dir)
                    if e.is_dir(follow_symlinks=False) and e.name not in (".trash", ".spare")}
        except FileNotFoundError:
            return set()

    def trash_entries(self) -> set[str]:
        """Removed volumes' storage not yet destroyed (ROOT/volumes/.trash)."""
        try:
            return set(os.listdir(os.path.join(self.volumes_dir, ".trash")))
        except FileNotFoundError:
            return set()

    def wait_trash_empty(self, timeout: float = 20.0) -> set[str]:
        """Waits for the trash to empty; returns what is left at the end."""
        deadline = time.monotonic() + timeout
        while (left := self.trash_entries()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def list_volumes(self, filters=None) -> dict:
        """{name: volume JSON} from GET /volumes."""
        path = "/volumes"
        if filters is not None:
            path += "?filters=" + urllib.parse.quote(json.dumps(filters))
        status, body = self.api("GET", path)
        assert status == 200, (status, body)
        return {v["Name"]: v for v in body["Volumes"]}

    def mountpoint(self, name):
        return os.path.join(self.root, "volumes", name, "_data")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request) -> bool:
    node = request.node
    return any(getattr(getattr(node, "rep_" + w, None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture
def berth_factory(request):
    """Makes BerthDaemon objects (not started); all are cleaned up."""
    made: list[BerthDaemon] = []

    def make(root=None, extra_args=()) -> BerthDaemon:
        d = BerthDaemon(root=root, extra_args=extra_args)
        made.append(d)
        return d

    yield make
    failed = _failed(request)
    # Daemons sharing a root: clean those that borrowed it first.
    for d in sorted(made, key=lambda d: d.owns_root):
        if failed:
            print(f"\n--- berth log {d.log} ---\n{log_tail(d.log)}")
        d.cleanup()


@pytest.fixture
def berth(berth_factory):
    """A fresh, running berth daemon (function scope)."""
    return berth_factory().start()


@pytest.fixture(scope="module")
def berth_module():
    """One running berth daemon shared by a module's tests."""
    d = BerthDaemon()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


# ---------------------------------------------------------------------------
# A private dockerd (20.10 from Debian's docker.io) for differential tests
# ---------------------------------------------------------------------------


class DockerDaemon(ApiClient):
    def __init__(self, bin_path, extra_args=()):
        self.bin = bin_path
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="dk-", dir="/tmp")
        self.root = os.path.join(self.dir, "root")
        self.exec_root = os.path.join(self.dir, "exec")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.pidfile = os.path.join(self.dir, "docker.pid")
        self.log = os.path.join(self.dir, "dockerd.log")
        self.host = "unix://" + self.sock
        self.docker_config = os.path.join(self.dir, "docker-config")
        os.makedirs(self.docker_config, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout=60.0):
        argv = [self.bin, "--data-root", self.root, "--exec-root", self.exec_root,
                "--host", self.host, "--pidfile", self.pidfile,
                "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge=none", *self.extra_args]
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"private dockerd exited with {self.proc.returncode}\n"
                                     f"--- log ---\n{log_tail(self.log)}")
            if os.path.exists(self.sock):
                try:
                    if unix_http(self.sock, "GET", "/_ping", timeout=2)[0] == 200:
                        return self
                except OSError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"private dockerd not ready after {timeout}s\n{log_tail(self.log)}")

    def stop(self):
        try:
            stop_pid(self.proc, timeout=30)
        finally:
            # Its own containerd lives under our exec root; if dockerd died
            # hard it may be left: end it by PID (only processes naming our
            # unique folder).
            for pid in pids_with_cmdline_containing(self.dir):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            remove_tree(self.dir)

    def docker(self, *args, api_version=None, check=True, input=None, env=None, timeout=120):
        argv = [DOCKER_BIN, "-H", self.host, *map(str, args)]
        return run_cmd(argv, _docker_env(api_version, self.docker_config, env), check, input, timeout)

    def mountpoint(self, name):
        return os.path.join(self.root, "volumes", name, "_data")


@pytest.fixture(scope="module")
def dockerd():
    """A private dockerd on a unique temp folder (module scope)."""
    bin_path = os.environ.get("DOCKERD_BIN") or shutil.which("dockerd")
    if not bin_path:
        msg = ("!" * 70 + "\n!!! dockerd IS NOT INSTALLED: the differential test against Docker "
               "was NOT run.\n!!! Install Debian's docker.io (apt-get install docker.io).\n" + "!" * 70)
        print(msg)
        pytest.skip(msg)
    d = DockerDaemon(bin_path)
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``--dist loadgroup`` pytest-xdist keeps a group on one worker:
    every test without an ``xdist_group`` mark of its own (or its
    module's) gets its module's name as its group, so a file runs whole on
    one worker, its module fixtures once. Runs before xdist's own hook,
    which reads the marks."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        module = getattr(item, "module", None)
        group = module.__name__ if module is not None else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Stops a ``--dist loadgroup`` run whose groups do not hold: xdist
    carries a test's group as an ``@group`` suffix of its node id, and with
    pytest 9.2 and pytest-xdist 3.8 that suffix is silently lost
    (pytest-dev/pytest-xdist#1386): tests would then run on both workers
    in any order, the files of a group too (tests/requirements.txt caps
    pytest below 9.2 for this)."""
    if node.config.getvalue("dist") != "loadgroup":
        return
    ungrouped = [i for i in ids if "@" not in i.rsplit("]", 1)[-1]]
    if ungrouped:
        import xdist
        pytest.exit(f"pytest-xdist {xdist.__version__} with pytest {pytest.__version__} does not "
                    f"group tests with --dist loadgroup (e.g. {ungrouped[0]} has no @group): "
                    "files would run split over workers, and group \"netpools\" at once. "
                    "Use the versions of tests/requirements.txt.", returncode=4)


def pytest_report_header(config):
    return [f"berth binary: {BERTH_BIN}", f"docker CLI: {DOCKER_BIN}"]


# --- container tests: one daemon and one busybox image per test module ---

@pytest.fixture(scope="module")
def daemon():
    """A berth daemon for a module of container tests; every container is
    force-removed and leftover shims killed at the end."""
    from busybox_image import berth_with_cleanup
    yield from berth_with_cleanup()


@pytest.fixture(scope="module")
def image(daemon, request):
    """The busybox test image, imported once per module under a unique tag."""
    from busybox_image import import_busybox
    stem = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    return import_busybox(daemon, f"{stem}-{uuid.uuid4().hex[:8]}:v1")


@pytest.fixture(scope="module")
def dockerd_image(dockerd, request):
    """The busybox test image on the module's private dockerd."""
    from busybox_image import import_busybox
    stem = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    return import_busybox(dockerd, f"{stem}-{uuid.uuid4().hex[:8]}:v1")


@pytest.fixture
def client(daemon):
    """A docker-py client on the module's container-test daemon."""
    import docker
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def uniq(daemon):
    """A unique name prefix for one test; containers (forced, with their
    anonymous volumes) and volumes named with it are removed afterwards."""
    prefix = "u" + uuid.uuid4().hex[:10]
    yield prefix
    status, body = daemon.api("GET", "/containers/json?all=1")
    for c in body if status == 200 else []:
        if any(n.lstrip("/").startswith(prefix) for n in c.get("Names") or []):
            daemon.api("DELETE", f"/containers/{c['Id']}?force=1&v=1")
    status, body = daemon.api("GET", "/volumes")
    for v in ((body or {}).get("Volumes") or []) if status == 200 else []:
        if v["Name"].startswith(prefix):
            daemon.api("DELETE", f"/volumes/{v['Name']}?force=1")


# --- host state helpers for storage tests ---

def loop_devices_backed_by(path: str, under: bool = False) -> list[str]:
    """Loop devices whose backing file is ``path`` (or, with ``under``, any
    file below that folder), read from sysfs."""
    real = os.path.realpath(path)
    out = []
    for dev in os.listdir("/sys/block"):
        if not dev.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing == real or (under and backing.startswith(real.rstrip("/") + "/")):
            out.append(dev)
    return out


def mount_points_under(prefix: str) -> list[str]:
    """Mount points at or below ``prefix`` (this process's view)."""
    with open("/proc/self/mountinfo", errors="surrogateescape") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
