"""Every command of the README runs, as written, so the tour never rots.

The README's ```sh blocks are read from the file itself. The first block
holds the two set-up commands: the test command is what .ci/run runs (CI
runs it; running it here would run this suite inside itself), and the
first command is run by test_setup.py's fresh-machine test. Every later
block is one script of the tour, run in order with `bash -e -o pipefail`
in a scratch folder against a berth daemon of the test's own; the only
change made to the text is the socket: `unix:///run/berth.sock` becomes the
test daemon's (and `DOCKER_HOST` is set to it for the blocks before the
tour's own `export`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import DOCKER_BIN

# With scripts/test's two pytest-xdist workers, the files of group "netpools"
# (test_readme.py, test_container_networks.py, test_service.py,
# test_daemon_config.py) never run at the same time: the tour makes a network
# with no --subnet (and runs containers on it), so its subnet comes from
# Docker's default address pools (172.17.0.0/16 and up): a daemon takes the
# first one no route of the host has, so two at once take the same one.
pytestmark = pytest.mark.xdist_group("netpools")

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DEFAULT_HOST = "unix:///run/berth.sock"


def sh_blocks(text: str) -> list[str]:
    """The bodies of the README's ```sh fenced blocks, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """A block's command lines (comments and blank lines dropped, trailing
    comments kept: bash reads them)."""
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_first_block_is_setup_and_what_ci_runs():
    first = commands(sh_blocks(README.read_text())[0])
    assert first == [
        "sudo scripts/setup && cargo build --release && sudo ./target/release/berth daemon",
        "sudo scripts/setup --test && sudo scripts/test",
    ], first
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/setup --test\nexec scripts/test\n" in ci, ci


def test_the_tour_runs_as_written(berth_factory):
    d = berth_factory(extra_args=["--thin-pool-size", "2G"]).start()
    blocks = sh_blocks(README.read_text())[1:]
    assert len(blocks) >= 4, "the tour's blocks were not found"
    bindir = Path(d.bin).parent
    env = {
        **os.environ,
        "PATH": f"{bindir}:{Path(DOCKER_BIN).parent}:{os.environ.get('PATH', '')}",
        "DOCKER_HOST": d.host,
        "DOCKER_CONFIG": d.docker_config,
    }
    env.pop("BERTH_HOST", None)
    work = tempfile.mkdtemp(prefix="readme-", dir="/tmp")
    try:
        for number, block in enumerate(blocks, 2):
            script = block.replace(DEFAULT_HOST, d.host)
            p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, env=env,
                               capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, (f"README block {number} failed (exit {p.returncode}):\n"
                                       f"{block}\n--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}")
        # The tour did what it says.
        assert d.docker("run", "--rm", "-v", "data:/data", "busybox:local",
                        "cat", "/data/greeting").stdout.strip() == "hello"
        names = d.docker("volume", "ls", "-q").stdout.split()
        assert {"data", "data2", "db", "db2", "db-staging"} <= set(names), names
        assert "scratch" not in names
    finally:
        subprocess.run(["docker", "-H", d.host, "rm", "-f", "ticker"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

