"""The API over TCP with mutual TLS (issue 13's front door): `berth tls init`
makes a CA and certificates; the daemon serves a unix socket and a TLS port
at once; the docker CLI and docker-py with the right files work; a client
without a certificate, with one from another CA, with an expired one, and a
plain-HTTP client on the TLS port are refused before any request is read;
a TCP listener without TLS is refused at start unless the user says
--tls=false, and then every start warns."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import docker
import pytest

from conftest import BERTH_BIN, DOCKER_BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_init(d: str, *args: str) -> None:
    p = subprocess.run([BERTH_BIN, "tls", "init", d, *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="berth-tls-", dir="/tmp")
    tls_init(os.path.join(d, "mine"))
    tls_init(os.path.join(d, "other"))
    expired_client(os.path.join(d, "mine"), os.path.join(d, "expired"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def expired_client(ca_dir: str, out: str) -> None:
    """A client certificate signed by the right CA that expired yesterday."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    with open(os.path.join(ca_dir, "ca.pem"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(ca_dir, "ca-key.pem"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old client")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(out)
    with open(os.path.join(out, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(out, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def tls_daemon(berth_factory, certs):
    mine = os.path.join(certs, "mine")
    port = free_port()
    d = berth_factory(extra_args=[
        "--host", f"tcp://127.0.0.1:{port}", "--tlsverify",
        "--tlscacert", f"{mine}/ca.pem", "--tlscert", f"{mine}/server-cert.pem",
        "--tlskey", f"{mine}/server-key.pem"])
    d.start()
    return d, port


def https_get(port: int, ca: str, cert: str | None, key: str | None) -> bytes:
    """GET /_ping over TLS with an optional client certificate: the answer's
    bytes, or an exception for a refused handshake or a closed connection."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data


def test_docker_cli_and_docker_py_over_mutual_tls(berth_factory, certs, uniq, monkeypatch):
    d, port = tls_daemon(berth_factory, certs)
    mine = os.path.join(certs, "mine")
    flags = ["--tlsverify", "--tlscacert", f"{mine}/ca.pem", "--tlscert", f"{mine}/cert.pem",
             "--tlskey", f"{mine}/key.pem", "-H", f"tcp://localhost:{port}"]
    env = dict(os.environ, DOCKER_CONFIG=d.docker_config)
    p = subprocess.run([DOCKER_BIN, *flags, "volume", "create", f"{uniq}v"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    # The same volume through the unix socket: one daemon, two front doors.
    assert d.api("GET", f"/volumes/{uniq}v")[0] == 200
    # requests lets these override the client's own CA (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = docker.tls.TLSConfig(client_cert=(f"{mine}/cert.pem", f"{mine}/key.pem"),
                               ca_cert=f"{mine}/ca.pem", verify=True)
    client = docker.DockerClient(base_url=f"https://localhost:{port}", tls=tls)
    try:
        assert client.version()["ApiVersion"]
        assert f"{uniq}v" in [v.name for v in client.volumes.list()]
    finally:
        client.close()
    with open(d.log) as f:
        log = f.read()
    assert "serving the API over TCP with mutual TLS" in log


@pytest.mark.parametrize("who", ["no certificate", "another CA", "expired", "plain HTTP"])
def test_clients_without_a_valid_certificate_are_refused(berth_factory, certs, who):
    d, port = tls_daemon(berth_factory, certs)
    mine, other, old = (os.path.join(certs, n) for n in ("mine", "other", "expired"))
    if who == "plain HTTP":
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = s.recv(65536)
            except ConnectionError:
                answer = b""
    else:
        cert = {"no certificate": None, "another CA": other, "expired": old}[who]
        try:
            answer = https_get(port, f"{mine}/ca.pem", cert and f"{cert}/cert.pem",
                               cert and f"{cert}/key.pem")
        except (ssl.SSLError, ConnectionError):
            answer = b""  # refused in the handshake (TLS 1.3: at the first read)
    assert not answer.startswith(b"HTTP/"), answer
    # The right certificate still works afterwards.
    ok = https_get(port, f"{mine}/ca.pem", f"{mine}/cert.pem", f"{mine}/key.pem")
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"OK"), ok


def test_a_silent_client_does_not_hold_up_others(berth_factory, certs):
    d, port = tls_daemon(berth_factory, certs)
    mine = os.path.join(certs, "mine")
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    try:
        ok = https_get(port, f"{mine}/ca.pem", f"{mine}/cert.pem", f"{mine}/key.pem")
        assert ok.startswith(b"HTTP/1.1 200")
    finally:
        for s in silent:
            s.close()


def test_tcp_without_tls_is_refused_at_start_unless_said(berth_factory, certs, tmp_path):
    port = free_port()
    root = tmp_path / "root"
    p = subprocess.run([BERTH_BIN, "daemon", "--config-file", "/dev/null", "--root", str(root),
                        "--pidfile", str(tmp_path / "p.pid"), "--host", f"unix://{tmp_path}/s.sock",
                        "--host", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "a tcp:// listener needs --tlsverify" in p.stderr, p.stderr
    assert not root.exists(), "refused before the root was touched"
    mine = os.path.join(certs, "mine")
    p = subprocess.run([BERTH_BIN, "daemon", "--validate", "--config-file", "/dev/null",
                        "--host", f"tcp://127.0.0.1:{port}", "--tls",
                        "--tlscert", f"{mine}/server-cert.pem", "--tlskey", f"{mine}/server-key.pem"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "--tlsverify=false" in p.stderr, p.stderr
    # Said explicitly: plain HTTP, and a warning at every start.
    d = berth_factory(extra_args=["--host", f"tcp://127.0.0.1:{port}", "--tls=false"])
    for _ in range(2):
        d.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        d.stop()
    with open(d.log) as f:
        log = f.read()
    assert log.count("plain HTTP and UNAUTHENTICATED") == 2


def test_tls_init_makes_certificates_strict_verifiers_accept(certs):
    mine = os.path.join(certs, "mine")
    p = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", f"{mine}/ca.pem",
                        f"{mine}/server-cert.pem", f"{mine}/cert.pem"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_tls_init_refuses_to_overwrite(certs):
    p = subprocess.run([BERTH_BIN, "tls", "init", os.path.join(certs, "mine")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "exists: nothing was written" in p.stderr
    assert oct(os.stat(os.path.join(certs, "mine", "key.pem")).st_mode & 0o777) == "0o600"


def test_berths_own_cli_over_mutual_tls(berth_factory, certs, uniq):
    d, port = tls_daemon(berth_factory, certs)
    mine, other = os.path.join(certs, "mine"), os.path.join(certs, "other")

    def berth(ca_dir: str, *args: str) -> subprocess.CompletedProcess:
        flags = ["--tlsverify", "--tlscacert", f"{ca_dir}/ca.pem", "--tlscert", f"{mine}/cert.pem",
                 "--tlskey", f"{mine}/key.pem", "-H", f"tcp://localhost:{port}"]
        return subprocess.run([BERTH_BIN, *flags, *args], capture_output=True, text=True, timeout=60)

    p = berth(mine, "volume", "create", f"{uniq}tls")
    assert p.returncode == 0, p.stderr
    assert d.api("GET", f"/volumes/{uniq}tls")[0] == 200
    # A daemon whose certificate the client's CA did not sign is not trusted.
    p = berth(other, "volume", "ls")
    assert p.returncode == 1 and "TLS with the daemon" in p.stderr, p.stderr
    # TLS without verifying the daemon is refused by the client itself.
    p = subprocess.run([BERTH_BIN, "--tls", "-H", f"tcp://localhost:{port}", "volume", "ls"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "--tlsverify" in p.stderr, p.stderr
