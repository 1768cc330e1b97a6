"""Must-show 3: the docker CLI sees the same thing from berth as from Docker.

The commands of differential_commands.txt run in order against a fresh
berth and a fresh private dockerd 20.10 (API 1.41, so both with
DOCKER_API_VERSION=1.41); each command's (exit code, stdout, stderr) are
compared after normalisation. Lines marked ``# berth-differs: reason`` are
run on both but not compared. Then berth alone is checked at its newest API
version, where prune removes anonymous volumes only (API >= 1.42).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DATA = Path(__file__).with_name("differential_commands.txt")
API = "1.41"

_MARKER = re.compile(r"\s#\s*(berth-differs:.*|unordered\b.*)$")


@dataclass
class Command:
    lineno: int
    text: str
    argv: list[str]
    differs: str | None = None  # reason, when a known difference
    unordered: bool = False


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    raw: tuple = field(default=(), repr=False)


def load_commands(path=DATA) -> list[Command]:
    cmds = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        differs = None
        unordered = False
        m = _MARKER.search(stripped)
        if m:
            marker = m.group(1).strip()
            stripped = stripped[:m.start()].strip()
            if marker.startswith("berth-differs:"):
                differs = marker[len("berth-differs:"):].strip()
                assert differs, f"line {lineno}: berth-differs needs a reason"
            else:
                unordered = True
        cmds.append(Command(lineno, stripped, shlex.split(stripped), differs, unordered))
    return cmds


def test_data_file_parses():
    cmds = load_commands()
    assert len(cmds) > 40
    assert any(c.differs for c in cmds)
    assert any(c.unordered for c in cmds)
    long_name = [c for c in cmds if c.argv[:2] == ["volume", "create"] and c.argv[-1].startswith("xxx")]
    assert long_name and len(long_name[0].argv[-1]) == 300


class Engine:
    """Adapts BerthDaemon / DockerDaemon for the runner."""

    def __init__(self, name, daemon, root):
        self.name = name
        self.daemon = daemon
        self.root = os.path.realpath(root)

    def run(self, cmd: Command, api_version) -> Result:
        if cmd.argv[0] == "@write":
            _, vol, size = cmd.argv
            path = os.path.join(self.daemon.mountpoint(vol), "blob")
            with open(path, "wb") as f:
                f.write(b"\xcd" * int(size))
            return Result(0, "", "")
        proc = self.daemon.docker(*cmd.argv, api_version=api_version, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def normalise(self, text: str) -> str:
        text = text.replace(self.root, "<ROOT>")
        text = re.sub(r"\b[0-9a-f]{64}\b", "<ID>", text)
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "<TIME>", text)
        text = text.replace("Invalid filter", "invalid filter")
        return text


def normalised(engine: Engine, cmd: Command, res: Result) -> Result:
    out = engine.normalise(res.stdout)
    err = engine.normalise(res.stderr)
    if cmd.unordered:
        out = "\n".join(sorted(out.splitlines())) + "\n"
    return Result(res.rc, out, err)


def render(res: Result) -> list[str]:
    lines = [f"exit {res.rc}"]
    lines += ["out| " + line for line in res.stdout.splitlines()]
    lines += ["err| " + line for line in res.stderr.splitlines()]
    return lines


def run_sequence(engines, cmds, api_version):
    """Runs every command on every engine in step; returns the transcript."""
    transcript = []
    for cmd in cmds:
        results = {}
        for eng in engines:
            results[eng.name] = normalised(eng, cmd, eng.run(cmd, api_version))
        transcript.append((cmd, results))
    return transcript


def test_docker_cli_differential(berth, dockerd):
    cmds = load_commands()
    engines = [Engine("dockerd-20.10", dockerd, dockerd.root),
               Engine("berth", berth, berth.root)]
    transcript = run_sequence(engines, cmds, API)

    mismatches = []
    known = []
    for cmd, results in transcript:
        want = results["dockerd-20.10"]
        got = results["berth"]
        if cmd.differs:
            known.append(f"line {cmd.lineno}: docker {cmd.text}\n    reason: {cmd.differs}\n"
                         f"    dockerd: {' / '.join(render(want))}\n"
                         f"    berth:   {' / '.join(render(got))}")
            continue
        if (want.rc, want.stdout, want.stderr) != (got.rc, got.stdout, got.stderr):
            diff = "\n".join(difflib.unified_diff(render(want), render(got), "dockerd-20.10",
                                                  "berth", lineterm="", n=3))
            mismatches.append(f"line {cmd.lineno}: docker {cmd.text}\n{diff}")

    print(f"\n{len(transcript)} commands, {len(known)} known differences (run, not compared):")
    for k in known:
        print(k)
    if mismatches:
        pytest.fail(f"{len(mismatches)} of {len(transcript)} commands differ between "
                    f"dockerd 20.10 and berth (DOCKER_API_VERSION={API}):\n\n"
                    + "\n\n".join(mismatches), pytrace=False)


# ---------------------------------------------------------------------------
# berth alone at its newest API version: 1.42+ prune semantics
# ---------------------------------------------------------------------------

NEWEST = [
    # (command, exit code, normalised stdout, stderr: a string or a regex to fullmatch)
    ("volume create named1", 0, "named1\n", ""),
    ("volume create --label a=b named2", 0, "named2\n", ""),
    ("volume create -o type=tmpfs -o device=tmpfs withopts", 0, "withopts\n", ""),
    ("volume create", 0, "<ID>\n", ""),
    ("volume create", 0, "<ID>\n", ""),
    ("@write named1 5000", 0, "", ""),
    ("volume ls -q --filter label=com.docker.volume.anonymous", 0, "<ID>\n<ID>\n", ""),
    # moby prints the two values in map order; either order is fine.
    ("volume prune -f --filter all=true --filter all=false", 1, "",
     re.compile(r"Error response from daemon: invalid filter 'all=\[(false true|true false)\]': "
                r"only one value is expected\n")),
    ("volume prune -f", 0, "Deleted Volumes:\n<ID>\n<ID>\n\nTotal reclaimed space: 0B\n", ""),
    ("volume ls -q", 0, "named1\nnamed2\nwithopts\n", ""),
    ("volume prune -f", 0, "Total reclaimed space: 0B\n", ""),
    ("volume prune -f --filter all=true --filter label=a=b", 0,
     "Deleted Volumes:\nnamed2\n\nTotal reclaimed space: 0B\n", ""),
    ("volume prune -f -a --filter all=1", 1, "",
     "conflicting options: cannot specify both --all and --filter all=1\n"),
    ("volume prune -f -a", 0, "Deleted Volumes:\nnamed1\n\nTotal reclaimed space: 5kB\n", ""),
    ("volume ls -q", 0, "withopts\n", ""),
    ("volume prune -f -a", 0, "Total reclaimed space: 0B\n", ""),
    ("volume rm withopts", 0, "withopts\n", ""),
    ("volume ls -q", 0, "", ""),
]


def test_newest_api_prune_is_anonymous_only(berth):
    eng = Engine("berth", berth, berth.root)
    failures = []
    for i, (text, rc, out, err) in enumerate(NEWEST):
        cmd = Command(i, text, shlex.split(text))
        res = normalised(eng, cmd, eng.run(cmd, None))
        err_ok = err.fullmatch(res.stderr) if isinstance(err, re.Pattern) else res.stderr == err
        if (res.rc, res.stdout) != (rc, out) or not err_ok:
            shown = err.pattern if isinstance(err, re.Pattern) else err
            diff = "\n".join(difflib.unified_diff(render(Result(rc, out, shown)), render(res),
                                                  "expected", "berth", lineterm="", n=3))
            failures.append(f"docker {text}\n{diff}")
    if failures:
        pytest.fail("berth at its newest API version:\n\n" + "\n\n".join(failures), pytrace=False)
