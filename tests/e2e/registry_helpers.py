"""A real private registry for pull and push tests: Debian's
`docker-registry serve CONFIG` (distribution 2.8) on 127.0.0.1 (or on
the host's own non-loopback address) with a free port, filesystem storage
under a temporary folder and deletes enabled; optionally TLS with a CA
made here with `openssl`, and `auth.htpasswd` with a bcrypt user
(`htpasswd -B`, Debian's apache2-utils).

    reg = Registry(tls=True, auth=("alice", "s3cret")).start()
    reg.host          # "127.0.0.1:PORT"
    reg.catalog()     # ["repo", ...] straight from the registry's API
    reg.manifest("repo", "tag")  # raw bytes, Docker-Content-Digest, type
    reg.blob_path(digest)        # the blob's file on disk (fault tests)
    reg.stop()        # by PID, also mid-test; cleanup() removes the folder

Fixtures: ``registry_factory`` (function scope) and
``registry_factory_module`` make Registry objects that are stopped and
removed afterwards; ``populated_registry`` (module) is a plain-HTTP
registry on 127.0.0.1 holding the images of registry_images.py (a Docker
schema 2 image pushed by a private dockerd, OCI images with gzip and with
zstd layers, a multi-platform index). A test module imports the fixtures
it uses: ``from registry_helpers import registry_factory  # noqa: F401``.

``ThrottledProxy`` relays TCP to a registry at a bounded rate, so that a
test can stop the registry while a large pull is surely still running.

``pull_api(daemon, ref)`` pulls through the raw API and returns the JSON
progress messages (``stream_error``, ``layer_statuses`` read them);
``image_store_files(berth)`` lists berth's layer folders, kept blobs and
download scratch files, to show that a failed pull left nothing behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest

from conftest import _failed, log_tail, remove_tree, stop_pid

REGISTRY_BIN = os.environ.get("REGISTRY_BIN") or shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO_BIN = shutil.which("skopeo") or "/usr/bin/skopeo"
OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"
HTPASSWD_BIN = shutil.which("htpasswd") or "/usr/bin/htpasswd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ALL_MANIFESTS = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def need_registry_tools(*tools: str) -> None:
    """Skips the test when a tool it needs is missing (scripts/setup --test
    installs them all)."""
    paths = {"docker-registry": REGISTRY_BIN, "skopeo": SKOPEO_BIN, "openssl": OPENSSL_BIN}
    for tool in tools or ("docker-registry",):
        if not os.path.exists(paths.get(tool) or shutil.which(tool) or "/nonexistent"):
            pytest.skip(f"{tool} is not installed (scripts/setup --test installs it)")


def free_port(bind: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((bind, 0))
        return s.getsockname()[1]


def external_ipv4() -> str | None:
    """The host's first global IPv4 address: a registry there is not on
    127.0.0.0/8, so dockerd (and berth) treat it as secure (HTTPS with
    verification) unless named with --insecure-registry."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# TLS: a CA and a server certificate made with openssl
# ---------------------------------------------------------------------------


class TestCA:
    """A CA (key, cert) and a server certificate it signed for ``ips`` and
    ``names`` (subjectAltName), all in ``folder``."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: str, ips=("127.0.0.1",), names=("localhost",)):
        self.dir = folder
        os.makedirs(folder, exist_ok=True)
        self.ca_key = os.path.join(folder, "ca.key")
        self.ca_crt = os.path.join(folder, "ca.crt")
        self.server_key = os.path.join(folder, "server.key")
        self.server_crt = os.path.join(folder, "server.crt")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._openssl("req", "-x509", *ec, "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "3",
                      "-subj", "/CN=berth test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        csr = os.path.join(folder, "server.csr")
        self._openssl("req", "-new", *ec, "-keyout", self.server_key, "-out", csr,
                      "-subj", f"/CN={ips[0] if ips else names[0]}")
        ext = os.path.join(folder, "server.ext")
        san = ",".join([f"IP:{i}" for i in ips] + [f"DNS:{n}" for n in names])
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
                      "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3",
                      "-out", self.server_crt, "-extfile", ext)
        # A folder holding only ca.crt (skopeo's --cert-dir takes every *.key
        # as a client key).
        self.trust_dir = os.path.join(folder, "trust")
        os.makedirs(self.trust_dir, exist_ok=True)
        shutil.copyfile(self.ca_crt, os.path.join(self.trust_dir, "ca.crt"))

    @staticmethod
    def _openssl(*args):
        p = subprocess.run([OPENSSL_BIN, *args], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)} failed: {p.stderr}")

    def certs_dir(self, dest: str, *hosts: str) -> str:
        """Docker's layout: ``<dest>/<host:port>/ca.crt`` for each host."""
        for host in hosts:
            os.makedirs(os.path.join(dest, host), exist_ok=True)
            shutil.copyfile(self.ca_crt, os.path.join(dest, host, "ca.crt"))
        return dest


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash (the only kind the registry takes)."""
    if os.path.exists(HTPASSWD_BIN):
        p = subprocess.run([HTPASSWD_BIN, "-nbB", user, password], capture_output=True,
                           text=True, check=True)
        return p.stdout.strip()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # libxcrypt's bcrypt ($2b$); gone in Python 3.13
    salt = "$2b$05$" + base64.b64encode(os.urandom(16), b"./").decode()[:22]
    return f"{user}:{crypt.crypt(password, salt)}"


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------


@dataclass
class Manifest:
    body: bytes
    digest: str        # Docker-Content-Digest
    media_type: str    # Content-Type

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Registry:
    """One `docker-registry serve` on ``bind`` (default 127.0.0.1; "external"
    picks the host's own non-loopback address) and a free port."""

    def __init__(self, tls: bool = False, auth: tuple[str, str] | None = None,
                 bind: str = "127.0.0.1"):
        if bind == "external":
            bind = external_ipv4()
            if not bind:
                pytest.skip("the host has no non-loopback IPv4 address")
        self.bind = bind
        self.tls = tls
        self.auth = auth
        self.dir = tempfile.mkdtemp(prefix="reg-", dir="/tmp")
        self.storage = os.path.join(self.dir, "storage")
        self.config_path = os.path.join(self.dir, "config.json")
        self.log = os.path.join(self.dir, "registry.log")
        self.ca = TestCA(os.path.join(self.dir, "tls"), ips=sorted({"127.0.0.1", bind})) if tls else None
        self.htpasswd = None
        if auth:
            self.htpasswd = os.path.join(self.dir, "htpasswd")
            with open(self.htpasswd, "w") as f:
                f.write(bcrypt_line(*auth) + "\n")
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -----------------------------------------------------

    def _config(self) -> dict:
        cfg = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": self.storage},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"{self.bind}:{self.port}", "secret": os.urandom(16).hex(),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.ca:
            cfg["http"]["tls"] = {"certificate": self.ca.server_crt, "key": self.ca.server_key}
        if self.htpasswd:
            cfg["auth"] = {"htpasswd": {"realm": "berth-test", "path": self.htpasswd}}
        return cfg

    def start(self, timeout: float = 30.0) -> "Registry":
        """Starts the registry (again on the same port after a stop) and waits
        until GET /v2/ answers."""
        if self.running():
            raise RuntimeError("registry already running")
        for attempt in range(5):
            if self.port is None or attempt:
                self.port = free_port(self.bind)
            with open(self.config_path, "w") as f:
                json.dump(self._config(), f, indent=1)
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            with open(self.log, "ab") as logf:
                logf.write(f"\n=== {time.strftime('%H:%M:%S')} serve on {self.host}\n".encode())
                logf.flush()
                self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config_path], env=env,
                                             stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
            if self._wait_ready(timeout):
                return self
            if "address already in use" not in log_tail(self.log, 5):
                break
        raise AssertionError(f"registry did not start on {self.host}\n{log_tail(self.log)}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _, _ = self.request("GET", "/v2/", auth=False, timeout=2)
                if status in (200, 401):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        stop_pid(self.proc)
        return False

    def stop(self, hard: bool = False) -> int | None:
        """Stops the registry by its PID: SIGTERM (SIGKILL fallback), or at
        once with ``hard`` (open connections are cut)."""
        if self.proc is not None and self.proc.poll() is None and hard:
            self.proc.send_signal(signal.SIGKILL)
        return stop_pid(self.proc, timeout=10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        try:
            self.stop()
        finally:
            remove_tree(self.dir)

    # -- addresses -----------------------------------------------------

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def ref(self, repo: str, tag: str = "latest") -> str:
        return f"{self.host}/{repo}:{tag}"

    def certs_dir(self, dest: str, *hosts: str) -> str:
        """Docker's certs.d layout for this registry (``<dest>/<host:port>/ca.crt``)."""
        assert self.ca, "not a TLS registry"
        return self.ca.certs_dir(dest, *(hosts or (self.host,)))

    @property
    def ca_path(self) -> str | None:
        return self.ca.ca_crt if self.ca else None

    # -- the registry's API --------------------------------------------

    def request(self, method: str, path: str, headers=None, body: bytes | None = None,
                auth: bool = True, timeout: float = 30.0):
        """(status, headers, body) of one request; TLS checked against the
        test CA, basic auth with the registry's user (unless ``auth`` is
        False)."""
        hdrs = dict(headers or {})
        if auth and self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(self.url + path, data=body, headers=hdrs, method=method)
        ctx = ssl.create_default_context(cafile=self.ca.ca_crt) if self.ca else None
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def put_blob(self, repo: str, data: bytes) -> str:
        """Uploads ``data`` as a blob of ``repo`` (monolithic); its digest."""
        status, hdrs, body = self.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"")
        assert status == 202, (status, body[:300])
        location = hdrs["Location"]
        digest = sha256_digest(data)
        sep = "&" if "?" in location else "?"
        path = location.split(self.host, 1)[-1] if "://" in location else location
        status, _, body = self.request("PUT", f"{path}{sep}digest={digest}", body=data,
                                       headers={"Content-Type": "application/octet-stream"})
        assert status == 201, (status, body[:300])
        return digest

    def put_manifest(self, repo: str, tag: str, manifest: dict, media_type: str) -> str:
        """Puts a manifest (sent as given, with its own media type); its digest."""
        data = json.dumps(manifest).encode()
        status, _, body = self.request("PUT", f"/v2/{repo}/manifests/{tag}", body=data,
                                       headers={"Content-Type": media_type})
        assert status == 201, (status, body[:300])
        return sha256_digest(data)

    def _ok(self, method, path, headers=None):
        status, hdrs, body = self.request(method, path, headers)
        if status != 200:
            raise AssertionError(f"{method} {path}: {status} {body[:300]!r}")
        return hdrs, body

    def catalog(self) -> list[str]:
        return json.loads(self._ok("GET", "/v2/_catalog?n=1000")[1])["repositories"] or []

    def tags(self, repo: str) -> list[str]:
        return json.loads(self._ok("GET", f"/v2/{repo}/tags/list")[1]).get("tags") or []

    def manifest(self, repo: str, ref: str, accept: str = ALL_MANIFESTS) -> Manifest:
        hdrs, body = self._ok("GET", f"/v2/{repo}/manifests/{ref}", {"Accept": accept})
        return Manifest(body, hdrs.get("Docker-Content-Digest", ""),
                        (hdrs.get("Content-Type") or "").split(";")[0])

    def blob(self, repo: str, digest: str) -> bytes:
        body = self._ok("GET", f"/v2/{repo}/blobs/{digest}")[1]
        assert sha256_digest(body) == digest, f"blob {digest} served with other content"
        return body

    def platform_manifest(self, repo: str, ref: str, arch: str = HOST_ARCH) -> Manifest:
        """The image manifest for linux/``arch`` (through an index if ``ref``
        names one)."""
        m = self.manifest(repo, ref)
        if m.media_type in INDEX_TYPES:
            for d in m.json["manifests"]:
                p = d.get("platform") or {}
                if p.get("os") == "linux" and p.get("architecture") == arch:
                    return self.manifest(repo, d["digest"])
            raise AssertionError(f"{repo}:{ref} has no linux/{arch} manifest")
        return m

    def describe(self, repo: str, tag: str, arch: str = HOST_ARCH) -> "PushedImage":
        """What a pull of ``repo:tag`` for linux/``arch`` must give."""
        top = self.manifest(repo, tag)
        m = self.platform_manifest(repo, tag, arch)
        config_digest = m.json["config"]["digest"]
        config = json.loads(self.blob(repo, config_digest))
        return PushedImage(self.host, repo, tag, top.digest, config_digest,
                           list(config["rootfs"]["diff_ids"]),
                           [layer["digest"] for layer in m.json["layers"]], m.digest, config)

    # -- the storage on disk (fault tests) -----------------------------

    def blob_path(self, digest: str) -> str:
        """The blob's data file: docker/registry/v2/blobs/sha256/<2>/<hex>/data."""
        algo, hexd = digest.split(":", 1)
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", algo, hexd[:2],
                            hexd, "data")

    def corrupt_blob(self, digest: str) -> None:
        """Changes bytes of the blob in place (same size): the registry serves
        it under its old digest."""
        path = self.blob_path(digest)
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            mid = len(data) // 2
            for i in range(mid, min(mid + 64, len(data))):
                data[i] ^= 0xFF
            f.seek(0)
            f.write(data)

    def delete_blob_file(self, digest: str) -> None:
        os.remove(self.blob_path(digest))


@dataclass
class PushedImage:
    """An image in a registry, as a pull for this host's platform sees it."""

    host: str
    repo: str
    tag: str
    digest: str              # what `repo:tag` resolves to (manifest or index)
    config_digest: str       # the image ID
    diff_ids: list[str]      # the config's rootfs.diff_ids
    layers: list[str]        # the platform manifest's layer blob digests
    manifest_digest: str     # the platform manifest's digest (== digest without an index)
    config: dict = field(repr=False, default_factory=dict)
    marker: str = ""         # what /marker holds

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"

    @property
    def by_digest(self) -> str:
        return f"{self.host}/{self.repo}@{self.digest}"

    @property
    def repo_digest(self) -> str:
        """What RepoDigests lists after a pull."""
        return f"{self.host}/{self.repo}@{self.digest}"


# ---------------------------------------------------------------------------
# Pulls through the API, and what a pull leaves in berth's image store
# ---------------------------------------------------------------------------


def split_ref(ref: str) -> tuple[str, str]:
    """``(fromImage, tag)`` as the docker CLI sends them for ``ref``:
    ``host:5000/repo:1`` → (``host:5000/repo``, ``1``); a digest goes in
    ``tag`` (``sha256:…``)."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return name, digest
    slash = ref.rfind("/") + 1
    if ":" in ref[slash:]:
        name, tag = ref.rsplit(":", 1)
        return name, tag
    return ref, "latest"


def progress_messages(body: bytes) -> list[dict]:
    """The JSON messages of a progress stream (one a line, CRLF or LF)."""
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def pull_api(daemon, ref: str, auth: dict | None = None, timeout: float = 300.0):
    """``POST /images/create?fromImage=&tag=`` on ``daemon`` (a BerthDaemon
    or DockerDaemon): ``(HTTP status, messages)``; an error answered
    before the stream starts gives ``[{"message": …}]``."""
    from urllib.parse import urlencode
    name, tag = split_ref(ref)
    headers = {}
    if auth:
        headers["X-Registry-Auth"] = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
    status, _, body = daemon.http("POST", "/images/create?" + urlencode({"fromImage": name, "tag": tag}),
                                  headers=headers, timeout=timeout)
    if status != 200:
        try:
            return status, [json.loads(body)]
        except ValueError:
            return status, [{"message": body.decode(errors="replace")}]
    return status, progress_messages(body)


def stream_error(messages: list[dict]) -> str | None:
    """The error a progress stream ended with (``error`` or ``message``)."""
    for m in messages:
        if m.get("error") or m.get("errorDetail") or ("message" in m and "status" not in m):
            return m.get("error") or (m.get("errorDetail") or {}).get("message") or m.get("message")
    return None


def layer_statuses(messages: list[dict], layer_ids) -> dict[str, list[str]]:
    """For each layer (12-hex short digest): its statuses in order, a
    status repeated in a row (Downloading, Extracting bars) once."""
    out: dict[str, list[str]] = {i: [] for i in layer_ids}
    for m in messages:
        seq = out.get(m.get("id"))
        if seq is not None and (not seq or seq[-1] != m.get("status")):
            seq.append(m.get("status"))
    return out


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def image_store_files(daemon) -> dict[str, list[str]]:
    """What berth's image store holds on disk: the layer folders
    (``<root>/images/layers``), the kept blobs (``blobs/<diff>/<digest>.<ext>``)
    and everything in the scratch folder of downloads (``images/tmp``)."""
    images = os.path.join(daemon.root, "images")

    def walk(top, files_only=False):
        found = []
        for dirpath, dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, top)
            names = filenames if files_only else filenames + dirnames
            found += [os.path.normpath(os.path.join(rel, n)) for n in names]
        return sorted(found)

    layers_dir = os.path.join(images, "layers")
    return {"layers": sorted(os.listdir(layers_dir)) if os.path.isdir(layers_dir) else [],
            "blobs": walk(os.path.join(images, "blobs")),
            "tmp": walk(os.path.join(images, "tmp"))}


# ---------------------------------------------------------------------------
# A throttling TCP relay
# ---------------------------------------------------------------------------


class FlakyUploads:
    """An HTTP relay to a plain-HTTP registry that answers the first
    ``failures`` blob-upload PUTs with a 500 (what a distribution registry
    answers to some concurrent pushes of one blob), and relays everything
    else. ``host`` is its 127.0.0.1:port; ``failed`` counts the 500s."""

    def __init__(self, target: str, failures: int = 1):
        import http.server
        import socketserver
        self.target, self.failures, self.failed = target, failures, 0
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if (self.command == "PUT" and "/blobs/uploads/" in self.path
                        and relay.failed < relay.failures):
                    relay.failed += 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                req = urllib.request.Request(f"http://{relay.target}{self.path}", data=body,
                                             headers=headers, method=self.command)
                try:
                    resp = urllib.request.urlopen(req, timeout=60)
                    status, hdrs, data = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as e:
                    status, hdrs, data = e.code, e.headers, e.read()
                self.send_response(status)
                for k, v in hdrs.items():
                    if k.lower() in ("content-length", "connection", "transfer-encoding"):
                        continue
                    self.send_header(k, v.replace(relay.target, relay.host))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _relay

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ThrottledProxy:
    """Relays 127.0.0.1:<port> to ``target`` ("host:port"), the answers at
    most ``rate`` bytes a second per connection. When the target goes away
    every relayed connection is closed."""

    def __init__(self, target: str, rate: int = 8 << 20):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.rate = rate
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.relayed = 0  # bytes sent back to clients so far
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.target, timeout=10)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            with self._lock:
                self._socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up, 0), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, self.rate), daemon=True).start()

    def _pump(self, src, dst, rate):
        start, sent = time.monotonic(), 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
                if rate:
                    self.relayed += len(data)
                if rate:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


class _Made:
    def __init__(self):
        self.registries: list[Registry] = []
        self.proxies: list[ThrottledProxy] = []

    def registry(self, tls=False, auth=None, bind="127.0.0.1", start=True) -> Registry:
        need_registry_tools("docker-registry", *(["openssl"] if tls else []))
        r = Registry(tls=tls, auth=auth, bind=bind)
        self.registries.append(r)
        return r.start() if start else r

    def proxy(self, target: str, rate: int = 8 << 20) -> ThrottledProxy:
        p = ThrottledProxy(target, rate)
        self.proxies.append(p)
        return p

    def cleanup(self, failed: bool):
        for p in self.proxies:
            p.close()
        for r in self.registries:
            if failed:
                print(f"\n--- registry log {r.log} ---\n{log_tail(r.log, 40)}")
            r.cleanup()


@pytest.fixture
def registry_factory(request):
    """``make(tls=False, auth=None, bind="127.0.0.1", start=True)`` makes a
    Registry; ``make.proxy(target, rate)`` a ThrottledProxy. All are
    stopped and removed after the test."""
    made = _Made()
    try:
        yield _Factory(made)
    finally:
        made.cleanup(_failed(request))


@pytest.fixture(scope="module")
def registry_factory_module():
    made = _Made()
    try:
        yield _Factory(made)
    finally:
        made.cleanup(False)


class _Factory:
    def __init__(self, made: _Made):
        self._made = made

    def __call__(self, **kw) -> Registry:
        return self._made.registry(**kw)

    def proxy(self, target: str, rate: int = 8 << 20) -> ThrottledProxy:
        return self._made.proxy(target, rate)


@pytest.fixture(scope="module")
def populated_registry(registry_factory_module, dockerd):
    """A plain-HTTP registry on 127.0.0.1 with the standard test images
    (registry_images.populate): ``(registry, {name: PushedImage})``."""
    from registry_images import populate
    need_registry_tools("docker-registry", "skopeo")
    reg = registry_factory_module()
    return reg, populate(reg, dockerd)
