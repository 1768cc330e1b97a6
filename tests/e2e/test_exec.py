"""`docker exec` (issue 11): the docker CLI and docker-py drive berth, and
a private dockerd (20.10) in the same run where Docker's behaviour is the
spec — exit codes, errors and their status codes, the inspect document,
events. What the kernel says inside the exec (uid, capabilities, seccomp,
namespaces, cgroup) is read, so an option stored but not applied fails.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from container_helpers import unique, wait_until

docker = pytest.importorskip("docker")


@pytest.fixture
def running(daemon, image):
    name = unique("ex")
    daemon.docker("run", "-d", "--net", "none", "--name", name, image, "sleep", "300")
    yield name
    daemon.docker("rm", "-f", name, check=False)


@pytest.fixture
def engines(daemon, image, dockerd, dockerd_image):
    """A running container on each engine: [(engine, name)]."""
    made = []
    for engine, img in ((daemon, image), (dockerd, dockerd_image)):
        name = unique("exd")
        engine.docker("run", "-d", "--net", "none", "--name", name, img, "sleep", "300")
        made.append((engine, name))
    yield made
    for engine, name in made:
        engine.docker("rm", "-f", name, check=False)


def status_field(text: str, field: str) -> str:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in {text!r}")


def test_output_streams_and_exit_codes(daemon, running):
    out = daemon.docker("exec", running, "sh", "-c", "echo out; echo err >&2")
    assert out.stdout == "out\n"
    assert out.stderr == "err\n"
    r = daemon.docker("exec", running, "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7
    r = daemon.docker("exec", running, "sh", "-c", "kill -9 $$", check=False)
    assert r.returncode == 137


def test_user_workdir_env_and_privileged(daemon, running):
    d = daemon.docker
    assert d("exec", "-u", "nobody", running, "id", "-u").stdout.strip() == "65534"
    assert d("exec", "-u", "1234:5678", running, "id").stdout.strip().startswith(
        "uid=1234 gid=5678")
    assert d("exec", "-w", "/tmp", running, "pwd").stdout.strip() == "/tmp"
    env = d("exec", "-e", "A=from-exec", "-e", "PATH=/bin", running, "env").stdout
    assert "A=from-exec" in env.splitlines() and "PATH=/bin" in env.splitlines()
    assert any(line.startswith("HOSTNAME=") for line in env.splitlines())
    main = int(status_field(d("exec", running, "cat", "/proc/1/status").stdout, "CapEff"), 16)
    own = int(status_field(d("exec", running, "cat", "/proc/self/status").stdout, "CapEff"), 16)
    assert own == main, "an exec has the container's capabilities, no more"
    bnd = int(status_field(d("exec", running, "cat", "/proc/self/status").stdout, "CapBnd"), 16)
    assert bnd == int(status_field(d("exec", running, "cat", "/proc/1/status").stdout, "CapBnd"), 16)
    priv = d("exec", "--privileged", running, "cat", "/proc/self/status").stdout
    assert int(status_field(priv, "CapEff"), 16) & (1 << 21), "privileged exec has CAP_SYS_ADMIN"
    bad = d("exec", "-u", "nosuchuser", running, "true", check=False)
    assert bad.returncode != 0
    assert "unable to find user nosuchuser" in bad.stderr, bad.stderr


def test_exec_joins_the_containers_namespaces_cgroup_and_seccomp(daemon, running):
    d = daemon.docker
    pid = json.loads(d("inspect", running).stdout)[0]["State"]["Pid"]
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        inside = d("exec", running, "readlink", f"/proc/self/ns/{ns}").stdout.strip()
        assert inside == os.readlink(f"/proc/{pid}/ns/{ns}"), ns
    ps = d("exec", running, "ps", "-o", "pid,comm").stdout
    assert any(line.split() == ["1", "sleep"] for line in ps.splitlines()), ps
    cgroup = d("exec", running, "cat", "/proc/self/cgroup").stdout
    with open(f"/proc/{pid}/cgroup") as f:
        assert cgroup == f.read()
    # Docker's seccomp profile (the container's) filters the exec too:
    # an unprivileged user namespace is refused inside, allowed outside.
    assert status_field(d("exec", running, "cat", "/proc/self/status").stdout, "Seccomp") == "2"
    r = d("exec", running, "unshare", "-U", "true", check=False)
    assert r.returncode != 0, "unshare -U must be refused by seccomp"


def test_missing_and_unrunnable_programs_like_dockerd(engines):
    codes = []
    for engine, name in engines:
        missing = engine.docker("exec", name, "nope-not-here", check=False)
        engine.docker("exec", name, "sh", "-c", "echo x > /tmp/f; chmod 644 /tmp/f")
        denied = engine.docker("exec", name, "/tmp/f", check=False)
        codes.append((missing.returncode, denied.returncode))
        assert "executable file not found" in missing.stdout + missing.stderr
    # Current moby (`setExitCodeFromError`) records 127 for a missing
    # program; dockerd 20.10, the peer here, still recorded 126.
    assert codes[0] == (127, 126), codes
    assert codes[1] in ((126, 126), (127, 126)), codes


def test_stdin_and_tty(daemon, running):
    d = daemon.docker
    assert d("exec", "-i", running, "cat", input="hello\nworld\n").stdout == "hello\nworld\n"
    assert d("exec", running, "cat", input="ignored").stdout == ""
    tty = d("exec", "-t", running, "sh", "-c", "tty; echo $TERM").stdout
    assert tty.splitlines()[0].startswith("/dev/pts/"), tty
    assert tty.splitlines()[1].strip() == "xterm"


def test_detached_exec_and_inspect_like_dockerd(engines):
    docs = []
    for engine, name in engines:
        c = docker.APIClient(base_url=engine.host, version="1.41")
        try:
            ex = c.exec_create(name, ["sh", "-c", "sleep 1; touch /tmp/done; exit 3"],
                               user="nobody", workdir="/tmp", environment={"X": "1"})
            first = c.exec_inspect(ex["Id"])
            assert first["Running"] is False and first["ExitCode"] is None and first["Pid"] == 0
            assert not c.exec_start(ex["Id"], detach=True)
            running = c.exec_inspect(ex["Id"])
            assert running["Running"] is True and running["Pid"] > 0
            wait_until(lambda: not c.exec_inspect(ex["Id"])["Running"], what="exec ended")
            done = c.exec_inspect(ex["Id"])
            assert done["ExitCode"] == 3
            assert engine.docker("exec", name, "ls", "/tmp/done").returncode == 0
            with pytest.raises(docker.errors.APIError) as again:
                c.exec_start(ex["Id"], detach=True)
            docs.append((done, again.value.response.status_code, again.value.explanation))
        finally:
            c.close()
    (ours, our_status, our_msg), (theirs, their_status, their_msg) = docs
    assert set(ours) == set(theirs)
    assert set(ours["ProcessConfig"]) == set(theirs["ProcessConfig"])
    for key in ("Running", "ExitCode", "OpenStdin", "OpenStdout", "OpenStderr", "DetachKeys"):
        assert ours[key] == theirs[key], key
    assert ours["ProcessConfig"] == theirs["ProcessConfig"]
    assert our_status == their_status == 409
    # Current moby's words; 20.10 said "Error: Exec command … has already run".
    assert our_msg == f"exec command {ours['ID']} has already run"
    assert their_msg.lower().removeprefix("error: ") == f"exec command {theirs['ID']} has already run"


def test_errors_like_dockerd(engines):
    seen = []
    for engine, name in engines:
        api = engine.api
        stopped = unique("stopped")
        img = json.loads(engine.docker("inspect", name).stdout)[0]["Config"]["Image"]
        engine.docker("create", "--name", stopped, img, "true")
        try:
            results = [
                api("POST", f"/containers/{name}/exec", {"Cmd": []}),
                api("POST", f"/containers/{stopped}/exec", {"Cmd": ["true"]}),
                api("POST", "/containers/no-such-container-x/exec", {"Cmd": ["true"]}),
                api("GET", "/exec/no-such-exec/json"),
                api("POST", "/exec/no-such-exec/start", {"Detach": True}),
                api("POST", "/exec/no-such-exec/resize?h=1&w=1"),
                api("POST", f"/containers/{name}/exec", {"Cmd": ["true"], "DetachKeys": "ctrl-1"}),
            ]
        finally:
            engine.docker("rm", "-f", stopped, check=False)
        cid = json.loads(engine.docker("inspect", stopped, check=False).stdout or "[{}]")
        seen.append([(s, (b or {}).get("message", "") if isinstance(b, dict) else b)
                     for s, b in results])
        del cid
    ours, theirs = seen
    assert [s for s, _ in ours] == [s for s, _ in theirs], (ours, theirs)
    for (_, a), (_, b) in zip(ours, theirs):
        norm = lambda m: " ".join(w for w in m.split() if len(w) < 40)  # noqa: E731
        assert norm(a) == norm(b) or ("not running" in a and "not running" in b), (a, b)


def test_exit_codes_are_recorded_before_the_stream_ends(daemon, running):
    """The docker CLI inspects the exec once, right after its stream ends:
    50 concurrent execs must all report their own exit code."""
    import concurrent.futures
    def one(i):
        r = daemon.docker("exec", running, "sh", "-c", f"echo h{i}; exit {i % 7}", check=False)
        return i, r.returncode, r.stdout
    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(one, range(50)))
    wrong = [(i, code) for i, code, out in results if code != i % 7 or out != f"h{i}\n"]
    assert wrong == [], wrong


def test_events_of_an_exec(daemon, running):
    since = time.time() - 1
    daemon.docker("exec", running, "sh", "-c", "exit 4", check=False)
    out = daemon.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 1:.3f}",
                        "--filter", f"container={running}", "--format", "{{json .}}").stdout
    events = [json.loads(line) for line in out.splitlines()]
    events = [e for e in events if e["Action"].startswith("exec_")]
    assert [e["Action"] for e in events] == [
        "exec_create: sh -c exit 4", "exec_start: sh -c exit 4", "exec_die"]
    die = events[2]
    assert die["Actor"]["Attributes"]["exitCode"] == "4"
    assert len(die["Actor"]["Attributes"]["execID"]) == 64


def test_docker_py_exec_run_and_resize(daemon, running):
    c = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        ctr = c.containers.get(running)
        code, out = ctr.exec_run("sh -c 'echo a; echo b >&2; exit 2'", demux=True)
        assert (code, out) == (2, (b"a\n", b"b\n"))
        code, out = ctr.exec_run(["tty"], tty=True)
        assert code == 0 and out.startswith(b"/dev/pts/"), out
        ex = c.api.exec_create(running, ["sh", "-c", "sleep 1; stty size"], tty=True)
        sock = c.api.exec_start(ex["Id"], tty=True, socket=True)
        c.api.exec_resize(ex["Id"], height=41, width=133)
        data = b""
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(10)
        while chunk := raw.recv(4096):
            data += chunk
        assert data.strip() == b"41 133"
        assert c.api.exec_inspect(ex["Id"])["ExitCode"] == 0
    finally:
        c.close()


def test_execs_end_with_their_container(daemon, image):
    name = unique("exk")
    daemon.docker("run", "-d", "--net", "none", "--name", name, image, "sleep", "300")
    try:
        c = docker.APIClient(base_url=daemon.host, version="1.41")
        ex = c.exec_create(name, ["sleep", "200"])
        c.exec_start(ex["Id"], detach=True)
        pid = c.exec_inspect(ex["Id"])["Pid"]
        assert os.path.exists(f"/proc/{pid}")
        daemon.docker("kill", name)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="exec process gone")
        # As dockerd: kept (ended, 137) until the container is removed.
        wait_until(lambda: c.exec_inspect(ex["Id"])["ExitCode"] == 137, what="exec ended")
        assert c.exec_inspect(ex["Id"])["Running"] is False
        daemon.docker("rm", name)
        status, _ = daemon.api("GET", f"/exec/{ex['Id']}/json")
        assert status == 404, "an exec is forgotten when its container is removed"
        c.close()
    finally:
        daemon.docker("rm", "-f", name, check=False)
