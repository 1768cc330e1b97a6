"""Helpers shared by the container test modules: a container's status as
`docker ps` shows it, and waiting for a line in its logs."""

from __future__ import annotations

import time


def ps_status(daemon, name, all=True) -> str | None:
    """The STATUS column of `docker ps [-a]` for container `name`, or None."""
    args = ["ps", "--format", "{{.Names}}\t{{.Status}}"]
    if all:
        args.insert(1, "-a")
    for line in daemon.docker(*args).stdout.splitlines():
        n, _, status = line.partition("\t")
        if n == name:
            return status
    return None


def wait_for_log(daemon, name, text, timeout=15.0) -> str:
    """Waits until `text` is in `docker logs name` (stdout or stderr);
    returns the logs."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        p = daemon.docker("logs", name, check=False)
        out = p.stdout + p.stderr
        if text in out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in logs of {name} after {timeout}s: {out!r}")
