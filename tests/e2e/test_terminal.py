"""A real terminal (issue 11): the docker CLI in a tmux pane runs
`docker run -it`, takes typed commands, follows a tmux resize (`stty
size`), detaches on Ctrl-P Ctrl-Q, comes back with `docker attach`; `docker
exec -it` likewise. The pane's text is read back with `capture-pane`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import DOCKER_BIN

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux missing (scripts/setup --test)")


class Pane:
    """One tmux server (private socket) with one window running sh."""

    def __init__(self, daemon, width=100, height=30):
        self.server = f"berth-{uuid.uuid4().hex[:8]}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DOCKER_HOST": daemon.host,
            "DOCKER_CONFIG": daemon.docker_config,
            "HOME": os.environ.get("HOME", "/root"),
            "PS1": "host$ ",
            "TERM": "xterm",
        }
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                  "env", "-i", *[f"{k}={v}" for k, v in env.items()], "sh")
        self.tmux("set-option", "-g", "remain-on-exit", "on")

    def tmux(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], check=True,
                              capture_output=True, text=True, timeout=20).stdout

    def type(self, text: str, enter=True):
        self.tmux("send-keys", "-t", "t", "-l", text)
        if enter:
            self.tmux("send-keys", "-t", "t", "Enter")

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t", "-S", "-200")

    def wait_for(self, text: str, timeout=20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the pane shows:\n{self.screen()}")

    def resize(self, width: int, height: int):
        self.tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def close(self):
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True)


@pytest.fixture
def pane(daemon):
    p = Pane(daemon)
    yield p
    p.close()


def state(daemon, name) -> dict:
    return json.loads(daemon.docker("inspect", name).stdout)[0]["State"]


def test_run_it_types_resizes_detaches_and_attaches(daemon, image, pane):
    name = f"tty-{uuid.uuid4().hex[:8]}"
    try:
        pane.type(f"{DOCKER_BIN} run -it --net none --name {name} {image} sh")
        pane.type("echo typed-$((6*7))")
        pane.wait_for("typed-42")
        pane.type("stty size")
        pane.wait_for("30 100")
        pane.resize(120, 40)
        pane.type("stty size")
        pane.wait_for("40 120")
        pane.keys("C-p", "C-q")
        pane.wait_for("host$")
        assert state(daemon, name)["Running"], "detaching leaves the container running"
        pane.type(f"{DOCKER_BIN} attach {name}")
        time.sleep(0.5)
        pane.type("echo back-$((1+1))")
        pane.wait_for("back-2")
        pane.type("exit 3")
        deadline = time.monotonic() + 20
        while state(daemon, name)["Running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state(daemon, name)["ExitCode"] == 3
        logs = daemon.docker("logs", name).stdout
        assert "typed-42" in logs and "back-2" in logs, "a TTY's output is logged"
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_exec_it_in_a_terminal(daemon, image, pane):
    name = f"ttx-{uuid.uuid4().hex[:8]}"
    daemon.docker("run", "-d", "--net", "none", "--name", name, image, "sleep", "300")
    try:
        pane.type(f"{DOCKER_BIN} exec -it {name} sh")
        pane.type("tty; echo in-exec-$((2*3))")
        screen = pane.wait_for("in-exec-6")
        assert "/dev/pts/" in screen
        pane.type("stty size")
        pane.wait_for("30 100")
        pane.resize(90, 25)
        pane.type("stty size")
        pane.wait_for("25 90")
        pane.type("exit")
        pane.wait_for("host$ ")
        assert state(daemon, name)["Running"], "leaving the exec leaves the container"
    finally:
        daemon.docker("rm", "-f", name, check=False)
