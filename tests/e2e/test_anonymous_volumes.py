"""Anonymous volumes made by containers (issue 4): every path labels them
(including `--mount type=volume` without a source, which Docker forgot
before moby#48748), and `volume prune` without -a removes exactly the
dangling anonymous ones."""

from __future__ import annotations

import uuid

ANON = "com.docker.volume.anonymous"


def mount_volume_name(daemon, container, destination):
    for m in daemon.api("GET", f"/containers/{container}/json")[1]["Mounts"]:
        if m["Destination"] == destination:
            return m["Name"]
    raise AssertionError(f"no mount at {destination}")


def labels(daemon, volume):
    status, body = daemon.api("GET", f"/volumes/{volume}")
    assert status == 200, body
    return body["Labels"] or {}


def test_every_anonymous_path_is_labelled(daemon, image):
    p = "an" + uuid.uuid4().hex[:8]
    try:
        daemon.docker("create", "--name", f"{p}-m", "--mount", "type=volume,target=/m", image, "true")
        daemon.docker("create", "--name", f"{p}-v", "-v", "/v", image, "true")
        for name, dst in ((f"{p}-m", "/m"), (f"{p}-v", "/v")):
            vol = mount_volume_name(daemon, name, dst)
            assert labels(daemon, vol) == {ANON: ""}, (name, vol)
    finally:
        daemon.docker("rm", "-v", f"{p}-m", f"{p}-v", check=False)


def test_prune_removes_exactly_the_dangling_anonymous_volumes(berth_factory):
    from busybox_image import import_busybox, remove_all_containers
    d = berth_factory().start()
    try:
        img = import_busybox(d, "anon-prune:v1")
        d.docker("create", "--name", "holder", "-v", "/held", img, "true")
        held = mount_volume_name(d, "holder", "/held")
        d.docker("create", "--name", "namer", "-v", "kept-named:/n", img, "true")
        loose = d.docker("volume", "create").stdout.strip()
        d.docker("volume", "create", "unused-named")
        out = d.docker("volume", "prune", "-f").stdout
        assert loose in out and held not in out
        remaining = set(d.docker("volume", "ls", "-q").stdout.split())
        assert remaining == {held, "kept-named", "unused-named"}
        d.docker("rm", "holder")  # without -v: its anonymous volume now dangles
        assert held in d.docker("volume", "prune", "-f").stdout
        assert set(d.docker("volume", "ls", "-q").stdout.split()) == {"kept-named", "unused-named"}
    finally:
        remove_all_containers(d)
