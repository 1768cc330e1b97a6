"""Restart policies (issue 11): `--restart on-failure:N|always|unless-stopped`
with Docker's back-off (100 ms, doubling), `docker stop` remembered, and a
simulated reboot — the daemon, every shim and every container process
killed with -9 — after which `always` and `unless-stopped` containers run
again (with their volume's data) and stopped ones do not.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

from container_helpers import berth_shims, process_alive, unique, wait_until


def state(daemon, name) -> dict:
    return json.loads(daemon.docker("inspect", name).stdout)[0]["State"]


def restart_count(daemon, name) -> int:
    return json.loads(daemon.docker("inspect", name).stdout)[0]["RestartCount"]


def cgroup_pids(cid: str) -> list[int]:
    pids: set[int] = set()
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        try:
            with open(f"/sys/fs/cgroup/{hierarchy}/berth/{cid}/cgroup.procs") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    return sorted(p for p in pids if process_alive(p))


def test_on_failure_backs_off_and_gives_up(daemon, image):
    name = unique("onf")
    since = time.time() - 1
    daemon.docker("run", "-d", "--net", "none", "--restart", "on-failure:3", "--name", name,
                  image, "sh", "-c", "exit 3")
    try:
        wait_until(lambda: restart_count(daemon, name) == 3 and state(daemon, name)["Status"] == "exited",
                   timeout=30, what="three restarts, then exited")
        time.sleep(1.0)
        assert state(daemon, name)["Status"] == "exited", "no fourth restart"
        assert state(daemon, name)["ExitCode"] == 3
        out = daemon.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                            "--filter", f"container={name}", "--format",
                            "{{.TimeNano}} {{.Action}}").stdout
        events = [(int(t) / 1e9, a) for t, a in (line.split() for line in out.splitlines())]
        starts = [t for t, a in events if a == "start"]
        dies = [t for t, a in events if a == "die"]
        assert len(starts) == 4 and len(dies) == 4, events
        # Each restart waits its back-off after the exit: 100, 200, 400 ms.
        waits = [start - die for die, start in zip(dies, starts[1:])]
        for wait, back_off in zip(waits, (0.1, 0.2, 0.4)):
            assert wait >= back_off, waits
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_always_comes_back_after_a_crash_not_after_stop(daemon, image):
    name = unique("alw")
    daemon.docker("run", "-d", "--net", "none", "--restart", "always", "--name", name,
                  image, "sleep", "300")
    try:
        first = state(daemon, name)["Pid"]
        os.kill(first, signal.SIGKILL)  # the program dies; no `docker kill`
        wait_until(lambda: (s := state(daemon, name))["Running"] and s["Pid"] not in (0, first),
                   what="restarted with a new process")
        assert restart_count(daemon, name) == 1
        daemon.docker("stop", "-t", "1", name)
        time.sleep(1.0)
        s = state(daemon, name)
        assert s["Status"] == "exited" and not s["Restarting"], "docker stop is remembered"
        daemon.docker("start", name)
        assert restart_count(daemon, name) == 0, "a manual start resets the count"
        assert daemon.docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.startswith("Up")
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_restart_verb_and_restarting_container_removal(daemon, image):
    name = unique("rv")
    daemon.docker("run", "-d", "--net", "none", "--rm", "--name", name, image, "sleep", "300")
    try:
        pid = state(daemon, name)["Pid"]
        daemon.docker("restart", "-t", "1", name)
        s = state(daemon, name)
        assert s["Running"] and s["Pid"] != pid, "restarted, and --rm did not remove it"
    finally:
        daemon.docker("rm", "-f", name, check=False)
    slow = unique("slow")
    # Restarts keep failing with a growing back-off: caught while restarting.
    daemon.docker("run", "-d", "--net", "none", "--restart", "always", "--name", slow,
                  image, "sh", "-c", "exit 1")
    try:
        wait_until(lambda: state(daemon, slow)["Restarting"], what="restarting")
        r = daemon.docker("rm", slow, check=False)
        assert r.returncode != 0 and "restarting" in r.stderr, r.stderr
        daemon.docker("stop", slow)
        s = state(daemon, slow)
        assert not s["Restarting"] and s["Status"] == "exited"
        time.sleep(0.5)
        assert state(daemon, slow)["Status"] == "exited", "a stop cancels the pending restart"
    finally:
        daemon.docker("rm", "-f", slow, check=False)


def test_bad_policies_refused_like_dockerd(daemon, image, dockerd):
    from busybox_image import import_busybox
    dimg = import_busybox(dockerd, f"rp-{uuid.uuid4().hex[:8]}:v1")
    seen = []
    for engine, img in ((daemon, image), (dockerd, dimg)):
        for args, words in [
            (["--restart", "sometimes"], "invalid restart policy"),
            (["--restart", "always:3"], "maximum retry count"),  # 20.10 and current moby word it differently
        ]:
            r = engine.docker("create", *args, img, "true", check=False)
            assert r.returncode != 0 and words in r.stderr, (engine, args, r.stderr)
        answers = []
        for policy in ({"Name": "always"}, {"Name": "on-failure", "MaximumRetryCount": -1},
                       {"Name": "nope"}):
            answers.append(engine.api("POST", "/containers/create", {
                "Image": img, "Cmd": ["true"],
                "HostConfig": {"AutoRemove": policy["Name"] == "always", "RestartPolicy": policy}}))
        seen.append(answers)
    ours, theirs = seen
    assert [s for s, _ in ours] == [s for s, _ in theirs] == [400, 400, 400], (ours, theirs)
    assert ours[0][1]["message"] == theirs[0][1]["message"]
    assert ours[1][1]["message"] == "invalid restart policy: maximum retry count cannot be negative"


def test_a_simulated_reboot_restarts_what_should_run(berth_factory):
    d = berth_factory().start()
    from busybox_image import remove_all_containers
    try:
        simulated_reboot(d)
    finally:
        if d.running():
            remove_all_containers(d)


def simulated_reboot(d):
    from busybox_image import import_busybox
    img = import_busybox(d, f"reboot-{uuid.uuid4().hex[:8]}:v1")
    names = {k: unique(k) for k in ("always", "unless", "stopped", "never", "alwaysstopped")}
    run = lambda key, *args: d.docker("run", "-d", "--net", "none", "--name", names[key],  # noqa: E731
                                      *args, img, "sh", "-c",
                                      "echo up >> /data/boots; sleep 300")
    run("always", "--restart", "always", "-v", f"{names['always']}:/data")
    run("unless", "--restart", "unless-stopped", "-v", f"{names['unless']}:/data")
    run("stopped", "--restart", "unless-stopped", "-v", f"{names['stopped']}:/data")
    run("never", "-v", f"{names['never']}:/data")
    run("alwaysstopped", "--restart", "always", "-v", f"{names['alwaysstopped']}:/data")
    d.docker("stop", "-t", "1", names["stopped"])
    d.docker("stop", "-t", "1", names["alwaysstopped"])
    ids = {k: json.loads(d.docker("inspect", n).stdout)[0]["Id"] for k, n in names.items()}
    # The reboot: daemon, shims and every container process gone at once.
    shims = list(berth_shims(d.root))
    d.kill9()
    for pid in shims:
        os.kill(pid, signal.SIGKILL)
    for cid in ids.values():
        for pid in cgroup_pids(cid):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all(not cgroup_pids(c) for c in ids.values()), what="all processes gone")
    d.start()
    for key in ("always", "unless", "alwaysstopped"):
        # Status, not Running: a restart in its back-off shows Running too.
        wait_until(lambda k=key: state(d, names[k])["Status"] == "running", timeout=30,
                   what=f"{key} running again")
    for key in ("stopped", "never"):
        s = state(d, names[key])
        assert s["Status"] == "exited", (key, s)
    for key in ("always", "unless"):
        boots = d.docker("exec", names[key], "cat", "/data/boots").stdout.split()
        assert boots == ["up", "up"], (key, boots)
