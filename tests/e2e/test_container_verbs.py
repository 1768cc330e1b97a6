"""The container verbs of issue 11 — pause, unpause, rename, restart, kill
with signals, wait conditions — driven by the docker CLI and docker-py
against berth and a private dockerd (20.10) in the same run: states,
status codes and messages compared; what the kernel says (the freezer's
state, a signal's handler output) read where a flag could be stored but
not applied.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from container_helpers import freezer_state, unique, wait_until

docker = pytest.importorskip("docker")


@pytest.fixture
def pair(daemon, image, dockerd, dockerd_image):
    """The same `sleep` container on each engine: [(engine, name)]."""
    made = []
    for engine, img in ((daemon, image), (dockerd, dockerd_image)):
        name = unique("vb")
        engine.docker("run", "-d", "--net", "none", "--name", name, img, "sh", "-c",
                      "trap 'echo got-usr1' USR1; while true; do sleep 0.1; done")
        made.append((engine, name))
    yield made
    for engine, name in made:
        engine.docker("rm", "-f", name, check=False)


def inspect(engine, name) -> dict:
    return json.loads(engine.docker("inspect", name).stdout)[0]


def test_pause_and_unpause_like_dockerd(pair):
    seen = []
    for engine, name in pair:
        engine.docker("pause", name)
        paused = inspect(engine, name)["State"]
        ps = engine.docker("ps", "--filter", f"name={name}", "--filter", "status=paused",
                           "--format", "{{.Status}}").stdout.strip()
        again = engine.api("POST", f"/containers/{name}/pause")
        rm = engine.api("DELETE", f"/containers/{name}")
        engine.docker("unpause", name)
        running = inspect(engine, name)["State"]
        not_paused = engine.api("POST", f"/containers/{name}/unpause")
        seen.append((paused, ps, again, rm, running, not_paused))
    ours, theirs = seen
    for (p, ps, again, rm, running, not_paused) in (ours, theirs):
        assert p["Status"] == "paused" and p["Paused"] and p["Running"]
        assert ps.startswith("Up") and ps.endswith("(Paused)"), ps
        assert running["Status"] == "running" and not running["Paused"]
    assert ours[2][0] == theirs[2][0] == 409
    assert ours[3][0] == theirs[3][0] == 409
    assert ours[5][0] == theirs[5][0] == 500
    assert ours[5][1]["message"].replace(inspect(*pair[0])["Id"], "ID") == \
        theirs[5][1]["message"].replace(inspect(*pair[1])["Id"], "ID")


def test_pause_freezes_the_cgroup(daemon, image):
    name = unique("frz")
    daemon.docker("run", "-d", "--net", "none", "--name", name, image, "sh", "-c",
                  "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; done")
    try:
        cid = inspect(daemon, name)["Id"]
        daemon.docker("pause", name)
        assert freezer_state(cid) in ("FROZEN", "1")
        status, _ = daemon.api("POST", f"/containers/{name}/exec", {"Cmd": ["true"]})
        assert status == 409, "no exec into a paused container"
        daemon.docker("unpause", name)
        assert freezer_state(cid) in ("THAWED", "0")
        count = lambda: int(daemon.docker("exec", name, "cat", "/tmp/n").stdout)  # noqa: E731
        first = count()
        wait_until(lambda: count() > first, what="it runs again")
        # A paused container is stopped by stop (thawed for the signal).
        daemon.docker("pause", name)
        daemon.docker("stop", "-t", "1", name)
        assert inspect(daemon, name)["State"]["Status"] == "exited"
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_rename_like_dockerd(pair, daemon, dockerd):
    seen = []
    for engine, name in pair:
        new = name + "-new"
        since = time.time() - 1
        engine.docker("rename", name, new)
        names = inspect(engine, new)["Name"]
        missing = engine.api("GET", f"/containers/{name}/json")[0]
        other = unique("other")
        img = inspect(engine, new)["Config"]["Image"]
        engine.docker("create", "--name", other, img, "true")
        taken = engine.api("POST", f"/containers/{new}/rename?name={other}")
        same = engine.api("POST", f"/containers/{new}/rename?name={new}")
        bad = engine.api("POST", f"/containers/{new}/rename?name=a%20b")
        empty = engine.api("POST", f"/containers/{new}/rename?name=")
        out = engine.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                            "--filter", "event=rename", "--format", "{{json .Actor.Attributes}}").stdout
        engine.docker("rename", new, name)  # back, for the fixture's clean-up
        engine.docker("rm", "-f", other)
        seen.append((names, missing, taken, same, bad, empty, json.loads(out.splitlines()[0])))
    ours, theirs = seen
    for side, (_, name) in zip((ours, theirs), pair):
        assert side[0] == f"/{name}-new" and side[1] == 404
        assert side[6]["oldName"] == f"/{name}" and side[6]["name"] == f"{name}-new"
    for i in (2, 3, 4, 5):
        assert ours[i][0] == theirs[i][0], (i, ours[i], theirs[i])
    assert ours[3][1]["message"] == theirs[3][1]["message"]
    assert ours[5][1]["message"] == theirs[5][1]["message"]


def test_kill_with_signals_and_wait_conditions(pair):
    for engine, name in pair:
        engine.docker("kill", "-s", "USR1", name)
        wait_until(lambda: "got-usr1" in engine.docker("logs", name).stdout, what="trap ran")
        assert inspect(engine, name)["State"]["Running"]
        bad = engine.docker("kill", "-s", "NOPE", name, check=False)
        assert bad.returncode != 0 and "Invalid signal" in bad.stderr or "invalid signal" in bad.stderr
        c = docker.APIClient(base_url=engine.host, version="1.41")
        try:
            img = inspect(engine, name)["Config"]["Image"]
            made = c.create_container(img, ["sh", "-c", "exit 5"], host_config=c.create_host_config(network_mode="none"))
            # next-exit waits through the start; not-running answers at once.
            assert c.wait(made["Id"], condition="not-running", timeout=10)["StatusCode"] == 0
            c.start(made["Id"])
            assert c.wait(made["Id"], timeout=10)["StatusCode"] == 5
            c.remove_container(made["Id"])
        finally:
            c.close()


def test_restart_like_dockerd(pair):
    for engine, name in pair:
        before = inspect(engine, name)["State"]
        since = time.time() - 1
        engine.docker("restart", "-t", "1", name)
        after = inspect(engine, name)["State"]
        assert after["Running"] and after["Pid"] != before["Pid"]
        assert after["StartedAt"] > before["StartedAt"]
        out = engine.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                            "--filter", f"container={name}", "--format", "{{.Action}}").stdout.split()
        # sh as pid 1 ignores SIGTERM: the stop's SIGKILL follows after 1 s.
        assert out[-6:] == ["kill", "kill", "die", "stop", "start", "restart"], out


def test_top_like_dockerd(pair):
    for engine, name in pair:
        out = engine.docker("top", name).stdout.splitlines()
        assert out[0].split()[:2] == ["UID", "PID"], out
        pid = inspect(engine, name)["State"]["Pid"]
        assert any(line.split()[1] == str(pid) for line in out[1:]), out
        c = docker.APIClient(base_url=engine.host, version="1.41")
        try:
            top = c.top(name, ps_args="-o pid,comm")
            assert top["Titles"] == ["PID", "COMMAND"]
            assert [str(pid), "sh"] in top["Processes"], top
        finally:
            c.close()
    engine, name = pair[0]
    status, body = engine.api("GET", f"/containers/{name}/top?ps_args=-o%20comm")
    assert status == 500 and "PID" in body["message"]


def test_stats_like_dockerd(pair):
    docs = []
    for engine, name in pair:
        c = docker.APIClient(base_url=engine.host, version="1.41")
        try:
            s = c.stats(name, stream=False)
            stream = c.stats(name, stream=True, decode=True)
            first, second = next(stream), next(stream)
            stream.close() if hasattr(stream, "close") else None
        finally:
            c.close()
        assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert s["precpu_stats"]["cpu_usage"]["total_usage"] > 0, "a second sample for precpu"
        assert s["memory_stats"]["usage"] > 0 and s["memory_stats"]["limit"] > 0
        assert s["pids_stats"]["current"] >= 1
        assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
        docs.append(s)
        table = engine.docker("stats", "--no-stream", "--format",
                              "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", name).stdout
        assert table.startswith(name) and "%" in table, table
    ours, theirs = docs
    assert set(ours) - {"networks"} == set(theirs) - {"networks"}
    for key in ("cpu_stats", "memory_stats", "pids_stats", "blkio_stats"):
        assert set(ours[key]) <= set(theirs[key]) | {"failcnt"}, (key, ours[key], theirs[key])


def test_health_status_transitions_like_dockerd(pair):
    """healthy → unhealthy (after Retries failures) → healthy, with the
    events and `docker ps` showing it, on both engines."""
    seen = []
    for engine, name in pair:
        img = inspect(engine, name)["Config"]["Image"]
        hc = unique("hc")
        since = time.time() - 1
        engine.docker("run", "-d", "--net", "none", "--name", hc,
                      "--health-cmd", "test -f /tmp/ok", "--health-interval", "300ms",
                      "--health-retries", "2", "--health-timeout", "2s", img,
                      "sh", "-c", "touch /tmp/ok; sleep 300")
        try:
            health = lambda: inspect(engine, hc)["State"]["Health"]  # noqa: E731
            assert health()["Status"] in ("starting", "healthy")
            wait_until(lambda: health()["Status"] == "healthy", what="healthy")
            ps = engine.docker("ps", "--filter", f"name={hc}", "--filter", "health=healthy",
                               "--format", "{{.Status}}").stdout.strip()
            assert ps.endswith("(healthy)"), ps
            engine.docker("exec", hc, "rm", "/tmp/ok")
            wait_until(lambda: health()["Status"] == "unhealthy", what="unhealthy")
            h = health()
            assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1
            engine.docker("exec", hc, "touch", "/tmp/ok")
            wait_until(lambda: health()["Status"] == "healthy", what="healthy again")
            assert len(health()["Log"]) <= 5
            out = engine.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                                "--filter", f"container={hc}", "--filter", "event=health_status",
                                "--format", "{{.Action}}").stdout.split("\n")
            seen.append([a for a in out if a])
        finally:
            engine.docker("rm", "-f", hc, check=False)
    ours, theirs = seen
    assert ours == theirs == ["health_status: healthy", "health_status: unhealthy",
                              "health_status: healthy"], (ours, theirs)
    engine, name = pair[0]
    img = inspect(engine, name)["Config"]["Image"]
    # The CLI checks its flags itself; the API gets moby's words.
    status, body = engine.api("POST", "/containers/create", {
        "Image": img, "Cmd": ["true"], "Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}})
    assert status == 400 and body["message"] == "Retries in Healthcheck cannot be negative"
    status, body = engine.api("POST", "/containers/create", {
        "Image": img, "Cmd": ["true"], "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}})
    assert status == 400 and body["message"] == "Interval in Healthcheck cannot be less than 1ms"


def cgroup_file(cid: str, controller: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{controller}/berth/{cid}/{name}") as f:
        return f.read().strip()


def test_update_resources_and_restart_policy(daemon, image):
    name = unique("upd")
    daemon.docker("run", "-d", "--net", "none", "--name", name, "--memory", "64m", image,
                  "sleep", "300")
    try:
        cid = inspect(daemon, name)["Id"]
        daemon.docker("update", "--memory", "128m", "--memory-swap", "256m", "--cpus", "0.5",
                      "--pids-limit", "30", "--restart", "on-failure:2", name)
        hc = inspect(daemon, name)["HostConfig"]
        assert hc["Memory"] == 128 << 20 and hc["NanoCpus"] == 500_000_000
        assert hc["PidsLimit"] == 30
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        if os.path.isdir("/sys/fs/cgroup/memory/berth"):
            assert cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
            assert cgroup_file(cid, "pids", "pids.max") == "30"
            assert cgroup_file(cid, "cpu", "cpu.cfs_quota_us") == "50000"
        bad = daemon.api("POST", f"/containers/{name}/update", {"RestartPolicy": {"Name": "nope"}})
        assert bad[0] == 400
        assert inspect(daemon, name)["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        # Still applied after a restart.
        daemon.docker("restart", "-t", "1", name)
        cid = inspect(daemon, name)["Id"]
        if os.path.isdir("/sys/fs/cgroup/memory/berth"):
            assert cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    finally:
        daemon.docker("rm", "-f", name, check=False)
