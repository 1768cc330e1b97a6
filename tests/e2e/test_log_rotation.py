"""Issue 16, must-show 3: json-file log rotation. A container printing
50 MB with `--log-opt max-size=1m --log-opt max-file=3` leaves about 3 MB
on disk, `docker logs` (and `--tail`) read across the rotated files, also
gzipped ones, and `docker logs -f` follows the log through rotations
without losing or repeating a line."""

from __future__ import annotations

import glob
import os
import subprocess

LINE = "x" * 200  # with its number and JSON around it, ~260 bytes an entry


def container_log_files(d, cid):
    """The container's json-file log and its rotated files."""
    log = d.docker("inspect", "-f", "{{.LogPath}}", cid).stdout.strip()
    return sorted(glob.glob(log + "*")), log


def test_fifty_megabytes_stay_within_three_files(daemon, image, uniq):
    name = f"{uniq}-chatty"
    script = f'i=0; while [ $i -lt 200000 ]; do echo "$i {LINE}"; i=$((i+1)); done'
    d = daemon
    d.docker("run", "--name", name, "--log-opt", "max-size=1m", "--log-opt", "max-file=3",
             image, "sh", "-c", script, timeout=600)
    try:
        files, live = container_log_files(d, name)
        assert live in files and len(files) == 3, files
        total = sum(os.path.getsize(f) for f in files)
        assert total <= 3 * 1_000_000, total       # 200,000 × ~260 bytes = ~52 MB written
        tail = d.docker("logs", "--tail", "2", name).stdout.splitlines()
        assert [line.split()[0] for line in tail] == ["199998", "199999"], tail
        every = d.docker("logs", name).stdout.splitlines()
        numbers = [int(line.split()[0]) for line in every]
        # What is kept is the end of the output, without a gap or a repeat.
        assert numbers == list(range(numbers[0], 200000)), (numbers[:3], numbers[-3:])
        assert 5_000 < len(numbers) < 12_000, len(numbers)
    finally:
        d.docker("rm", "-f", name, check=False)


def test_compressed_rotation_and_follow_across_rotations(daemon, image, uniq):
    name = f"{uniq}-follow"
    # Paced so that a follower on a loaded machine stays within the kept
    # files (what rotation deletes before anyone read it is gone, in Docker
    # too).
    script = (f'i=0; while [ $i -lt 30000 ]; do echo "$i {LINE}"; i=$((i+1)); '
              f'[ $((i % 100)) = 0 ] && usleep 20000; done; sleep 2')
    d = daemon
    d.docker("run", "-d", "--name", name, "--log-opt", "max-size=200k", "--log-opt", "max-file=6",
             "--log-opt", "compress=true", image, "sh", "-c", script)
    try:
        follow = subprocess.run(["docker", "-H", d.host, "logs", "-f", name],
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, "DOCKER_CONFIG": d.docker_config})
        numbers = [int(line.split()[0]) for line in follow.stdout.splitlines()]
        # -f began at the start of what was still kept and then followed the
        # live log through every later rotation: no gap, no repeat.
        assert numbers and numbers[-1] == 29999, numbers[-3:]
        assert numbers == list(range(numbers[0], 30000)), "a gap or a repeat while following"
        files, live = container_log_files(d, name)
        assert len(files) == 6 and sum(f.endswith(".gz") for f in files) == 5, files
        whole = [int(line.split()[0]) for line in d.docker("logs", name).stdout.splitlines()]
        assert whole[-1] == 29999 and whole == list(range(whole[0], 30000))
    finally:
        d.docker("rm", "-f", name, check=False)


def test_bad_rotation_options_are_refused_at_create(daemon, image):
    for opt, words in [("max-size=lots", "invalid size: 'lots'"),
                       ("max-file=0", "max-file cannot be less than 1"),
                       ("compress=maybe", 'strconv.ParseBool: parsing "maybe": invalid syntax'),
                       ("nope=1", "unknown log opt 'nope' for json-file log driver")]:
        p = daemon.docker("create", "--log-opt", opt, image, "true", check=False)
        assert p.returncode != 0 and words in p.stderr, (opt, p.stderr)


def test_follow_through_small_fast_rotations(daemon, image, uniq):
    """Tiny files (about 14 lines each), written fast: a follower that
    falls a rotation or two behind goes on from the rotated files, not
    from the live log (it used to skip a whole file at a time)."""
    name = f"{uniq}-tiny"
    d = daemon
    # A rotation every ~15 ms, so a follower falls behind a rotation or
    # two all the time; 40 files (~560 lines, about half a second of
    # output) are kept, so one that a busy machine (another test worker, a
    # build) stalls for a moment is not overtaken by rotation's deletes
    # (what is deleted before anyone read it is gone, in Docker too).
    script = 'i=0; while [ $i -lt 4000 ]; do echo "$i line"; i=$((i+1)); usleep 600; done; sleep 1'
    d.docker("run", "-d", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=40",
             image, "sh", "-c", script)
    try:
        follow = subprocess.run(["docker", "-H", d.host, "logs", "-f", name],
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, "DOCKER_CONFIG": d.docker_config})
        numbers = [int(line.split()[0]) for line in follow.stdout.splitlines()]
        assert numbers[-1] == 3999, numbers[-3:]
        gaps = [(a, b) for a, b in zip(numbers, numbers[1:]) if b != a + 1]
        assert not gaps, gaps[:10]
    finally:
        d.docker("rm", "-f", name, check=False)
