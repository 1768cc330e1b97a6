"""`docker image prune` (dangling only, `-a`, `label` / `label!` / `until`
filters), `docker container prune` with filters, and `docker system
prune`, against a real dockerd in the same run:
the same images and containers on both, the same CLI output once image IDs
are masked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from busybox_image import import_busybox, remove_all_containers

API = "1.41"


def import_unique(daemon, ref: str | None, text: str, *changes: str) -> None:
    """An image of one small file (a layer no other image has)."""
    work = tempfile.mkdtemp(prefix="bbprune-", dir="/tmp")
    try:
        with open(os.path.join(work, "only"), "w") as f:
            f.write(text)
        tar = os.path.join(work, "l.tar")
        subprocess.run(["tar", "-C", work, "-cf", tar, "only"], check=True)
        args = ["import"]
        for c in changes:
            args += ["-c", c]
        args += [tar] + ([ref] if ref else [])
        daemon.docker(*args, api_version=API)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def setup(daemon) -> None:
    image = import_busybox(daemon, "prune-used:v1")
    daemon.docker("create", "--name", "prune-holder", image, "true", api_version=API)
    daemon.docker("create", "--name", "prune-labeled", "--label", "keep=no", image, "true",
                  api_version=API)
    import_unique(daemon, "prune-tagged:v1", "tagged", "LABEL tier=gold")
    import_unique(daemon, None, "junk", "LABEL tier=junk")
    import_unique(daemon, None, "gold", "LABEL tier=gold")


def masked(text: str) -> list[str]:
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:<id>", text)
    return sorted(re.sub(r"\b[0-9a-f]{64}\b", "<container id>", text).splitlines())


@pytest.fixture
def engines(berth, dockerd):
    try:
        for d in (berth, dockerd):
            setup(d)
        yield berth, dockerd
    finally:
        for d in (berth, dockerd):
            d.docker("rm", "-f", "prune-holder", "prune-labeled", api_version=API, check=False)
            d.docker("image", "prune", "-a", "-f", api_version=API, check=False)
        remove_all_containers(berth)


def both(engines, *args) -> list[list[str]]:
    return [masked(d.docker(*args, api_version=API).stdout) for d in engines]


def test_image_prune_matches_dockerd_step_by_step(engines):
    steps = [
        ("image", "prune", "-f", "--filter", "label=tier=junk"),
        ("image", "prune", "-f", "--filter", "until=1h"),  # all newer: nothing
        ("image", "prune", "-f"),
        ("image", "prune", "-a", "-f", "--filter", "label!=tier=gold"),
        ("image", "prune", "-a", "-f"),
    ]
    for step in steps:
        berth_out, dockerd_out = both(engines, *step)
        assert berth_out == dockerd_out, step
        listed = both(engines, "images", "--format", "{{.Repository}}:{{.Tag}}")
        assert listed[0] == listed[1], step
    assert both(engines, "images", "-q")[0] != [], "the image a container uses stays"


def test_container_prune_filters_match_dockerd(engines):
    for step in (("container", "prune", "-f", "--filter", "until=1h"),
                 ("container", "prune", "-f", "--filter", "label!=keep=no",
                  "--filter", "label=nothing-has-this"),
                 ("container", "prune", "-f", "--filter", "label=keep=no")):
        berth_out, dockerd_out = both(engines, *step)
        assert berth_out == dockerd_out, step
        names = both(engines, "ps", "-a", "--format", "{{.Names}}")
        assert names[0] == names[1], step
    assert both(engines, "ps", "-a", "--format", "{{.Names}}")[0] == ["prune-holder"]


def test_system_prune_matches_dockerd(engines):
    berth_out, dockerd_out = both(engines, "system", "prune", "-f")
    assert berth_out == dockerd_out
    assert any("Total reclaimed space" in line for line in berth_out)


def test_bad_prune_filters_are_refused(berth):
    for flt, words in (("until=yesterday", "until"), ("nope=1", "invalid filter 'nope'"),
                       ("dangling=maybe", "dangling")):
        p = berth.docker("image", "prune", "-f", "--filter", flt, check=False)
        assert p.returncode != 0 and words in p.stderr, (flt, p.stderr)
