"""`docker events` (issue 4): volume create/mount/unmount/destroy/prune and
container create/start/die/destroy, with filters, `since` and `until`."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from conftest import DOCKER_BIN


def events(daemon, *args):
    p = daemon.docker("events", "--format", "{{json .}}", *args)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_volume_and_container_events_with_filters(daemon, image):
    vol = "ev" + uuid.uuid4().hex[:8]
    name = vol + "-c"
    start = time.time()
    daemon.docker("run", "--rm", "--name", name, "-v", f"{vol}:/d", image, "true")
    daemon.docker("volume", "rm", vol)
    since, until = f"{start - 1:.3f}", f"{time.time() + 1:.3f}"
    vol_events = events(daemon, "--since", since, "--until", until, "--filter", "type=volume", "--filter", f"volume={vol}")
    assert [e["Action"] for e in vol_events] == ["create", "mount", "unmount", "destroy"]
    assert vol_events[1]["Actor"]["Attributes"]["driver"] == "local"
    ctr_events = events(daemon, "--since", since, "--until", until, "--filter", f"container={name}", "--filter", "type=container")
    assert [e["Action"] for e in ctr_events] == ["create", "start", "die", "destroy"]
    assert ctr_events[2]["Actor"]["Attributes"]["exitCode"] == "0"
    only_die = events(daemon, "--since", since, "--until", until, "--filter", "event=die", "--filter", f"container={name}")
    assert len(only_die) == 1


def test_live_stream_and_prune_event(daemon, image):
    proc = subprocess.Popen([DOCKER_BIN, "-H", daemon.host, "events", "--format", "{{json .}}", "--filter", "type=volume"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        anon = daemon.docker("volume", "create").stdout.strip()
        daemon.docker("volume", "prune", "-f")
        deadline = time.time() + 10
        seen = []
        while time.time() < deadline and not any(e["Action"] == "prune" for e in seen):
            seen.append(json.loads(proc.stdout.readline()))
        actions = [(e["Action"], e["Actor"]["ID"]) for e in seen]
        assert ("create", anon) in actions and ("destroy", anon) in actions
        assert any(a == "prune" for a, _ in actions)
    finally:
        proc.kill()
        proc.wait()


def test_unknown_event_filter_is_400(daemon):
    status, _, body = daemon.http("GET", "/events?filters=" + '{"colour":{"red":true}}'.replace('"', "%22").replace("{", "%7B").replace("}", "%7D").replace(":", "%3A"))
    assert status == 400
    assert json.loads(body)["message"] == "invalid filter 'colour'"
