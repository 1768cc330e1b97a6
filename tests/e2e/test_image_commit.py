"""Images from containers, differentially against a private dockerd:
`docker diff`, `docker commit`, `docker export`, `docker save` and
`docker history`.

The same busybox root file system (busybox_image.py plus a few image
folders the steps change: /etc/{keep,gone,mod}, /data, /perm, /olddir,
/opq) is written to ONE tar file and `docker import`ed into berth and into
the module's private dockerd (20.10, `--bridge=none`), so both start from
the same layer (same diff ID). Every step then runs on both daemons with
the docker CLI (28) and the results are compared; where dockerd 20.10 and
current Docker differ, the test says which one it follows and why.

What Docker's behaviour is, for the record:

- `docker diff`: moby's overlay2 driver answers `Changes` with its naive
  diff (`archive.ChangesDirs` of the container's root against its parent:
  moby/moby daemon/graphdriver/overlay2/overlay.go, and dockerd 20.10 here
  does the same). So every folder that holds a change is listed as `C`, a
  folder replaced by `rm -rf` + `mkdir` is `C` with its old entries `D`
  one by one, and the list comes in Go map order (random from call to
  call): lists are compared sorted.
- Image inspect `Config`: Hostname, Domainname, AttachStd*, Tty, OpenStdin,
  StdinOnce and Image are "not part of the image specification and always
  empty" in current Docker (API >= 1.46 docs; dockerd 20.10 still copies
  the container's). Only the image-spec fields are compared.
- `Parent` and the IDs/tags of history rows under the top: berth keeps no
  parent chain (ARCHITECTURE.md, "History"), dockerd shows its local
  parents; not compared (a loaded image shows `<missing>` on both, which
  test_history_of_loaded_image_matches_dockerd checks).
- A commit with an invalid repository name: dockerd 20.10 commits first and
  fails to tag (500, an untagged image is left); moby since parses the
  reference first (400, nothing made). berth is held to the latter.

Every container, image and temp file a test makes is removed at its end,
also on failure; names are unique per run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import uuid

import pytest

from busybox_image import import_busybox, make_rootfs, write_files
from conftest import _failed, log_tail, mounts_under
from container_helpers import freeze_behind_berths_back, freezer_state, wait_for_log, wait_until

# ---------------------------------------------------------------------------
# The base image: one tar, imported into both daemons
# ---------------------------------------------------------------------------

BASE_FILES = {
    "etc/keep": "kept\n",
    "etc/gone": "gone\n",
    "etc/mod": "m\n",
    "data/f": "f\n",
    "data/g": "g\n",
    "perm/f": "p\n",
    "olddir/x": "x\n",
    "olddir/sub/y": "y\n",
    "opq/o1": "1\n",
    "opq/o2": "2\n",
}

# One change of each kind the brief names, for `docker diff` one by one.
DIFF_CASES = {
    "add-file": "echo new > /added",
    "add-file-in-image-dir": "echo n > /data/new",
    "modify-file": "echo more >> /data/f",
    "modify-file-in-etc": "echo more >> /etc/mod",
    "delete-file": "rm /data/g",
    "delete-file-in-etc": "rm /etc/gone",
    "nested-dirs": "mkdir -p /n1/n2/n3 && echo z > /n1/n2/n3/f",
    "delete-image-dir": "rm -rf /olddir",
    "replace-image-dir": "rm -rf /opq && mkdir /opq && echo new > /opq/new",
    "chmod-image-file": "chmod 600 /perm/f",
    "symlink": "ln -s /etc/keep /link",
}

# All of them in one container (commit, export, running diff).
SCENARIO = "set -e; " + "; ".join(
    DIFF_CASES[k] for k in ("add-file", "add-file-in-image-dir", "modify-file-in-etc",
                            "delete-file-in-etc", "nested-dirs", "delete-image-dir",
                            "replace-image-dir", "chmod-image-file", "symlink"))
DIFF_CASES["all"] = SCENARIO

# What a container of an image committed after SCENARIO sees.
CHECK_SCENARIO = r"""
for p in /added /data/new /etc/keep /etc/gone /olddir /olddir/x /opq/o1 /opq/o2 /opq/new \
         /n1/n2/n3/f /link /bin/ls; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "present $p"; else echo "absent $p"; fi
done
echo "opq: $(ls -A /opq | tr '\n' ' ')"
echo "mod: $(cat /etc/mod | tr '\n' ' ')"
echo "perm: $(stat -c %a /perm/f)"
echo "link: $(readlink /link)"
echo "wh: $(find / -xdev -name '.wh.*' 2>/dev/null | tr '\n' ' ')"
"""

EXPECTED_SCENARIO = """\
present /added
present /data/new
present /etc/keep
absent /etc/gone
absent /olddir
absent /olddir/x
absent /opq/o1
absent /opq/o2
present /opq/new
present /n1/n2/n3/f
present /link
present /bin/ls
opq: new 
mod: m more 
perm: 600
link: /etc/keep
wh: 
"""

COMMIT_CHANGES = ["ENV A=1", 'CMD ["cat","/added"]', "EXPOSE 80", "LABEL x=y",
                  "WORKDIR /w", "USER 1000"]
COMMIT_MESSAGE = "commit test message"
COMMIT_AUTHOR = "Ann Example <ann@example.com>"

# The image-spec fields of Config / ContainerConfig (see the module doc).
SPEC_FIELDS = ("User", "ExposedPorts", "Env", "Cmd", "Entrypoint", "Volumes", "WorkingDir",
               "Labels", "OnBuild", "StopSignal", "Healthcheck", "Shell")

# Paths of an export that are the engine's own (Docker's init layer and
# runtime mounts), not the container's: allowed to differ.
EXPORT_ENGINE_PATHS = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}
EXPORT_ENGINE_PREFIXES = ("dev/", "proc/", "sys/")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Made:
    """Containers and images made on a daemon, removed (forced) by
    ``cleanup`` containers first, images newest first."""

    def __init__(self):
        self.containers: list[tuple[object, str]] = []
        self.images: list[tuple[object, str]] = []
        self.paths: list[str] = []

    def container(self, d, name: str) -> str:
        self.containers.append((d, name))
        return name

    def image(self, d, ref: str) -> str:
        self.images.append((d, ref))
        return ref

    def tmpdir(self) -> str:
        path = tempfile.mkdtemp(prefix="commit-test-", dir="/tmp")
        self.paths.append(path)
        return path

    def cleanup(self):
        for d, name in reversed(self.containers):
            try:
                d.api("DELETE", f"/containers/{name}?force=1&v=1", timeout=60)
            except OSError:
                pass
        for d, ref in reversed(self.images):
            try:
                d.api("DELETE", f"/images/{urllib.parse.quote(ref, safe='')}?force=1", timeout=60)
            except OSError:
                pass
        for path in self.paths:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def made():
    m = Made()
    try:
        yield m
    finally:
        m.cleanup()


@pytest.fixture(scope="module")
def module_made():
    m = Made()
    try:
        yield m
    finally:
        m.cleanup()


@pytest.fixture(autouse=True)
def _daemon_logs_on_failure(request, daemon, dockerd):
    yield
    if _failed(request):
        print(f"\n--- berth log {daemon.log} (tail) ---\n{log_tail(daemon.log, 30)}")
        errors = [l for l in log_tail(dockerd.log, 400).splitlines(True) if "level=error" in l]
        print(f"\n--- dockerd log {dockerd.log} (errors) ---\n{''.join(errors[-10:])}")


@pytest.fixture(scope="module")
def base(daemon, dockerd, module_made):
    """The base image, imported from one tar into both daemons under the
    same reference. Returns {"ref", "layer", "tar"}."""
    work = module_made.tmpdir()
    root = make_rootfs(os.path.join(work, "rootfs"))
    write_files(root, BASE_FILES)
    tar = os.path.join(work, "base.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    shutil.rmtree(root)
    ref = f"{uid('cbase')}:v1"
    layers = {}
    for name, d in (("berth", daemon), ("dockerd", dockerd)):
        module_made.image(d, ref)
        d.docker("import", tar, ref)
        layers[name] = inspect_image(d, ref)["RootFS"]["Layers"]
    # The same tar: the same layer on both.
    assert layers["berth"] == layers["dockerd"] and len(layers["berth"]) == 1, layers
    return {"ref": ref, "layer": layers["berth"][0], "tar": tar}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def sides(daemon, dockerd):
    return (("berth", daemon), ("dockerd", dockerd))


def inspect_image(d, ref, api_version=None) -> dict:
    [info] = json.loads(d.docker("image", "inspect", ref, api_version=api_version).stdout)
    return info


def inspect_container(d, name) -> dict:
    [info] = json.loads(d.docker("inspect", name).stdout)
    return info


def image_ids(d) -> set[str]:
    return set(d.docker("images", "-aq", "--no-trunc").stdout.split())


def history(d, ref) -> list[dict]:
    status, body = d.api("GET", f"/images/{urllib.parse.quote(ref, safe='')}/history")
    assert status == 200, (status, body)
    return body


def changes(d, name):
    """The raw JSON body of GET /containers/{name}/changes."""
    status, headers, body = d.http("GET", f"/containers/{name}/changes")
    assert status == 200, (status, body)
    return json.loads(body)


def sorted_changes(body) -> list[tuple[str, int]]:
    return sorted((c["Path"], c["Kind"]) for c in body or [])


def change_diff(berth, docker) -> str:
    b, d = set(berth), set(docker)
    kind = "CAD"
    fmt = lambda s: ", ".join(f"{kind[k]} {p}" for p, k in sorted(s)) or "-"  # noqa: E731
    return (f"\n  berth only:   {fmt(b - d)}\n  dockerd only: {fmt(d - b)}"
            f"\n  berth:   {fmt(b)}\n  dockerd: {fmt(d)}")


def spec_config(cfg: dict | None) -> dict:
    """The image-spec fields of a Config; an empty Env list counts as
    none (berth's containers have Env [] where dockerd's have null, a
    difference of container create, not of commit)."""
    cfg = cfg or {}
    out = {k: cfg.get(k) for k in SPEC_FIELDS}
    if out["Env"] == []:
        out["Env"] = None
    return out


def run_out(d, ref, *cmd) -> str:
    """The output of `docker run --rm` of ``ref``."""
    return d.docker("run", "--rm", "--network", "none", ref, *cmd).stdout


def tar_entries(source) -> dict[str, tuple]:
    """{name: (type, mode, uid, gid, size of a regular file, link target)}
    of a tar (path or bytes); names without ``./`` and trailing ``/``, the
    root as ``.``; the mode without its file-type bits (Go's tar writer
    keeps them, GNU tar and berth do not)."""
    kinds = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
             tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
             tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}
    t = (tarfile.open(fileobj=io.BytesIO(source)) if isinstance(source, bytes)
         else tarfile.open(source))
    out = {}
    with t:
        for m in t.getmembers():
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            name = name.strip("/") or "."
            assert name not in out, f"{name} twice in the tar"
            out[name] = (kinds.get(m.type, repr(m.type)), oct(m.mode & 0o7777), m.uid, m.gid,
                         m.size if m.isreg() else None,
                         m.linkname if (m.issym() or m.islnk()) else None)
    return out


def engine_path(name: str) -> bool:
    return name in EXPORT_ENGINE_PATHS or name.startswith(EXPORT_ENGINE_PREFIXES)


def compare_exports(berth_tar, docker_tar) -> tuple[list[str], list[str]]:
    """(differences, allowed differences) of two export tars, one line each."""
    b, d = tar_entries(berth_tar), tar_entries(docker_tar)
    diffs, allowed = [], []
    for name in sorted(set(b) | set(d)):
        if b.get(name) == d.get(name):
            continue
        line = f"{name}: berth {b.get(name)} / dockerd {d.get(name)}"
        (allowed if engine_path(name) else diffs).append(line)
    return diffs, allowed


def manifest_of(tar_bytes: bytes) -> list[dict]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        return json.load(t.extractfile("manifest.json"))


def api_get_bytes(d, path, timeout=120):
    status, headers, body = d.http("GET", path, timeout=timeout)
    return status, headers, body


def run_scenario(d, base_ref, made, script=SCENARIO, prefix="sc") -> str:
    """A container that ran ``script`` on the base image (exited 0)."""
    name = made.container(d, uid(prefix))
    d.docker("run", "--network", "none", "--name", name, base_ref, "sh", "-c", script)
    return name


# ---------------------------------------------------------------------------
# 1. docker diff
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(DIFF_CASES))
def test_diff_matches_dockerd(daemon, dockerd, base, made, case):
    got = {}
    for side, d in sides(daemon, dockerd):
        name = run_scenario(d, base["ref"], made, DIFF_CASES[case], prefix=f"diff-{case}")
        got[side] = changes(d, name)
        if case == "all":
            # The CLI prints the same list (dockerd's order changes from
            # call to call: compared sorted).
            lines = d.docker("diff", name).stdout.splitlines()
            assert sorted(lines) == sorted(f"{'CAD'[c['Kind']]} {c['Path']}"
                                           for c in got[side]), (side, lines)
    assert got["dockerd"], "dockerd saw no change: the reference is broken"
    b, k = sorted_changes(got["berth"]), sorted_changes(got["dockerd"])
    assert b == k, (f"docker diff differs from dockerd's for {DIFF_CASES[case]!r}:"
                    + change_diff(b, k))


def test_diff_without_changes_is_null(daemon, dockerd, base, made):
    for side, d in sides(daemon, dockerd):
        created = made.container(d, uid("diff-fresh"))
        d.docker("create", "--network", "none", "--name", created, base["ref"], "true")
        ran = made.container(d, uid("diff-true"))
        d.docker("run", "--network", "none", "--name", ran, base["ref"], "true")
        for name in (created, ran):
            status, headers, body = d.http("GET", f"/containers/{name}/changes")
            assert (status, body.strip()) == (200, b"null"), (side, name, status, body)
            assert d.docker("diff", name).stdout == "", (side, name)


def test_diff_of_running_container_matches_dockerd(daemon, dockerd, base, made):
    got = {}
    for side, d in sides(daemon, dockerd):
        name = made.container(d, uid("diff-run"))
        d.docker("run", "-d", "--network", "none", "--name", name, base["ref"], "sh", "-c",
                 SCENARIO + "; echo ready; exec sleep 300")
        wait_for_log(d, name, "ready")
        assert inspect_container(d, name)["State"]["Running"], side
        got[side] = sorted_changes(changes(d, name))
    assert got["berth"] == got["dockerd"], ("running container:"
                                            + change_diff(got["berth"], got["dockerd"]))


def test_diff_unknown_container_404(daemon, dockerd):
    for side, d in sides(daemon, dockerd):
        status, body = d.api("GET", "/containers/nosuch-diff-xyz/changes")
        assert (status, body) == (404, {"message": "No such container: nosuch-diff-xyz"}), side


# ---------------------------------------------------------------------------
# 2. docker commit
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def committed(daemon, dockerd, base, module_made):
    """SCENARIO in a container, committed with -m, -a and every -c of
    COMMIT_CHANGES on both daemons under one reference."""
    ref = f"{uid('committed')}:v1"
    out = {"ref": ref}
    for side, d in sides(daemon, dockerd):
        name = run_scenario(d, base["ref"], module_made, prefix="commit-src")
        module_made.image(d, ref)
        args = ["commit", "-m", COMMIT_MESSAGE, "-a", COMMIT_AUTHOR]
        for c in COMMIT_CHANGES:
            args += ["-c", c]
        p = d.docker(*args, name, ref)
        out[side] = {"container": name, "container_id": inspect_container(d, name)["Id"],
                     "stdout": p.stdout, "stderr": p.stderr}
    return out


def test_commit_prints_the_new_id(daemon, dockerd, committed):
    for side, d in sides(daemon, dockerd):
        iid = inspect_image(d, committed["ref"])["Id"]
        assert committed[side]["stdout"] == iid + "\n", (side, committed[side])


def test_commit_inspect_matches_dockerd(daemon, dockerd, base, committed):
    info = {"berth": inspect_image(daemon, committed["ref"], api_version="1.44"),
            "dockerd": inspect_image(dockerd, committed["ref"])}  # dockerd 20.10: API 1.41
    for side, i in info.items():
        assert i["RepoTags"] == [committed["ref"]], side
        assert i["Comment"] == COMMIT_MESSAGE, side
        assert i["Author"] == COMMIT_AUTHOR, side
        # The base layer and one more.
        assert len(i["RootFS"]["Layers"]) == 2, (side, i["RootFS"])
        assert i["RootFS"]["Layers"][0] == base["layer"], side
        # Container: the committed container's ID; ContainerConfig (API
        # < 1.45): its own config, before the changes.
        assert i.get("Container") == committed[side]["container_id"], (side, i.get("Container"))
        assert "ContainerConfig" in i, side
        assert i["ContainerConfig"]["Cmd"] == ["sh", "-c", SCENARIO], (side, i["ContainerConfig"])
    b, k = info["berth"], info["dockerd"]
    assert spec_config(b["Config"]) == spec_config(k["Config"])
    assert spec_config(b["Config"]) == {
        **{f: None for f in SPEC_FIELDS},
        "User": "1000", "ExposedPorts": {"80/tcp": {}}, "Env": ["A=1"], "Cmd": ["cat", "/added"],
        "WorkingDir": "/w", "Labels": {"x": "y"}}
    assert spec_config(b["ContainerConfig"]) == spec_config(k["ContainerConfig"])
    assert b["Size"] == k["Size"], (b["Size"], k["Size"])
    # At API 1.45 the two fields are gone (Docker's API change).
    newer = inspect_image(daemon, committed["ref"], api_version="1.45")
    assert "Container" not in newer and "ContainerConfig" not in newer, sorted(newer)


def test_commit_history_matches_dockerd(daemon, dockerd, base, committed):
    rows = {side: history(d, committed["ref"]) for side, d in sides(daemon, dockerd)}
    for side, d in sides(daemon, dockerd):
        r = rows[side]
        assert len(r) == 2, (side, r)
        top = r[0]
        assert top["Id"] == inspect_image(d, committed["ref"])["Id"], side
        assert top["Tags"] == [committed["ref"]], side
        assert top["CreatedBy"] == f"sh -c {SCENARIO}", side
        assert top["Comment"] == COMMIT_MESSAGE, side
        assert top["Size"] > 0, (side, top)
        assert r[1]["Comment"] == "Imported from -", side
    key = lambda row: (row["CreatedBy"], row["Size"], row["Comment"])  # noqa: E731
    assert [key(r) for r in rows["berth"]] == [key(r) for r in rows["dockerd"]]
    # The CLI's rows, as printed.
    fmt = "{{.CreatedBy}}|{{.Size}}|{{.Comment}}"
    outs = {side: d.docker("history", "--no-trunc", "--format", fmt, committed["ref"]).stdout
            for side, d in sides(daemon, dockerd)}
    assert outs["berth"] == outs["dockerd"]


def test_run_of_committed_image_shows_the_changes(daemon, dockerd, committed):
    for side, d in sides(daemon, dockerd):
        out = run_out(d, committed["ref"], "sh", "-c", CHECK_SCENARIO)
        assert out == EXPECTED_SCENARIO, (side, out)
        # USER, WORKDIR, ENV of the changes; the image's CMD.
        assert run_out(d, committed["ref"], "sh", "-c", 'id -u; pwd; echo "A=$A"') == \
            "1000\n/w\nA=1\n", side
        assert run_out(d, committed["ref"]) == "new\n", side


def test_commit_of_unchanged_container_adds_no_layer(daemon, dockerd, base, made):
    rows, infos = {}, {}
    for side, d in sides(daemon, dockerd):
        for how in ("create", "run"):
            name = made.container(d, uid(f"empty-{how}"))
            d.docker(how, "--network", "none", "--name", name, base["ref"], "true")
            ref = made.image(d, f"{uid('emptycommit')}:{how}")
            d.docker("commit", name, ref)
            info = inspect_image(d, ref)
            assert info["RootFS"]["Layers"] == [base["layer"]], (side, how, info["RootFS"])
            r = history(d, ref)
            assert len(r) == 2 and r[0]["Size"] == 0 and r[0]["CreatedBy"] == "true", (side, how, r)
            rows[(side, how)] = [(x["CreatedBy"], x["Size"], x["Comment"]) for x in r]
            infos[(side, how)] = spec_config(info["Config"])
            assert run_out(d, ref, "cat", "/etc/keep") == "kept\n", (side, how)
    for how in ("create", "run"):
        assert rows[("berth", how)] == rows[("dockerd", how)], how
        assert infos[("berth", how)] == infos[("dockerd", how)], how


WRITER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done"


def counter(d, name) -> int:
    return int(d.docker("exec", name, "cat", "/tmp/counter").stdout.strip() or 0)


def assert_still_writing(d, name, side):
    state = inspect_container(d, name)["State"]
    assert (state["Status"], state["Running"], state["Paused"]) == ("running", True, False), \
        (side, state)
    first = counter(d, name)
    wait_until(lambda: counter(d, name) > first, timeout=10,
               what=f"{side}: container {name} writing again after its commit")


@pytest.mark.parametrize("pause", [True, False], ids=["default-pause", "pause-false"])
def test_commit_of_running_container(daemon, dockerd, base, made, pause):
    for side, d in sides(daemon, dockerd):
        name = made.container(d, uid("writer"))
        d.docker("run", "-d", "--network", "none", "--name", name, base["ref"], "sh", "-c", WRITER)
        wait_until(lambda: counter(d, name) > 2, what=f"{side}: the writer started")
        ref = made.image(d, f"{uid('running')}:v1")
        p = d.docker("commit", *([] if pause else ["--pause=false"]), name, ref, timeout=60)
        assert p.stdout.startswith("sha256:"), (side, p.stdout, p.stderr)
        assert_still_writing(d, name, side)
        info = inspect_image(d, ref)
        assert len(info["RootFS"]["Layers"]) == 2, (side, info["RootFS"])
        assert history(d, ref)[0]["Size"] > 0, side
        assert int(run_out(d, ref, "cat", "/tmp/counter").strip()) > 0, side


def test_commit_of_paused_container_leaves_it_paused(daemon, dockerd, base, made):
    for side, d in sides(daemon, dockerd):
        name = made.container(d, uid("paused"))
        d.docker("run", "-d", "--network", "none", "--name", name, base["ref"], "sh", "-c", WRITER)
        wait_until(lambda: counter(d, name) > 2, what=f"{side}: the writer started")
        d.docker("pause", name)
        ref = made.image(d, f"{uid('pausedcommit')}:v1")
        d.docker("commit", name, ref, timeout=60)
        state = inspect_container(d, name)["State"]
        assert (state["Status"], state["Paused"]) == ("paused", True), (side, state)
        d.docker("unpause", name)
        assert_still_writing(d, name, side)


def test_commit_bad_change_fails_like_dockerd(daemon, dockerd, base, made):
    cli, api = {}, {}
    for side, d in sides(daemon, dockerd):
        name = run_scenario(d, base["ref"], made, "true", prefix="badchange")
        before = image_ids(d)
        ref = made.image(d, f"{uid('badchange')}:v1")
        p = d.docker("commit", "-c", "FROM x", name, ref, check=False)
        cli[side] = (p.returncode, p.stdout, p.stderr)
        status, body = d.api("POST", f"/commit?container={name}&repo={ref.split(':')[0]}"
                                     f"&changes={urllib.parse.quote('FROM x')}")
        api[side] = (status, body)
        assert image_ids(d) == before, f"{side}: a failed commit left an image"
    assert cli["dockerd"][0] != 0 and api["dockerd"][0] == 400, (cli, api)
    assert (cli["berth"], api["berth"]) == (cli["dockerd"], api["dockerd"])


def test_commit_unknown_container_404(daemon, dockerd):
    for side, d in sides(daemon, dockerd):
        before = image_ids(d)
        status, body = d.api("POST", "/commit?container=nosuch-commit-xyz&repo=whatever")
        assert (status, body) == (404, {"message": "No such container: nosuch-commit-xyz"}), side
        p = d.docker("commit", "nosuch-commit-xyz", "whatever:1", check=False)
        assert p.returncode != 0, side
        assert p.stderr == "Error response from daemon: No such container: nosuch-commit-xyz\n", \
            (side, p.stderr)
        assert image_ids(d) == before, side


def test_commit_invalid_repository_name(daemon, dockerd, base, made):
    cli = {}
    for side, d in sides(daemon, dockerd):
        name = run_scenario(d, base["ref"], made, "echo x > /x", prefix="badrepo")
        before = image_ids(d)
        p = d.docker("commit", name, "Bad:Name", check=False)  # refused by the CLI itself
        cli[side] = (p.returncode, p.stderr)
        assert image_ids(d) == before, side
    assert cli["berth"] == cli["dockerd"] and cli["berth"][0] != 0, cli
    # The raw API: current moby parses the reference before committing
    # (400, nothing made); dockerd 20.10 is not the reference here (it
    # commits, then fails to tag: 500 and an untagged image).
    name = run_scenario(daemon, base["ref"], made, "echo x > /x", prefix="badrepo-api")
    before = image_ids(daemon)
    # (Not "UPPER/case": current reference parsing takes an upper-case
    # first component for a registry host, and the CLI 28 accepts it.)
    for query in ("repo=Bad", "repo=ok&tag=bad%20tag", "repo=-lead", "repo=a%2F%2Fb"):
        status, body = daemon.api("POST", f"/commit?container={name}&{query}")
        assert status == 400, (query, status, body)
        assert body["message"].startswith("invalid reference format"), (query, body)
        assert image_ids(daemon) == before, query


# ---------------------------------------------------------------------------
# 3. A commit chain
# ---------------------------------------------------------------------------

CHAIN_STEP1 = ("set -e; echo one > /one; rm /etc/keep; mkdir -p /deep/er; echo d > /deep/er/f; "
               "rm -rf /opq; mkdir /opq; echo n > /opq/n")
CHAIN_STEP2 = "set -e; echo two > /two; rm /one; rm -rf /deep; echo more >> /data/f; rm /bin/vi"

CHECK_CHAIN = r"""
for p in /one /two /etc/keep /etc/gone /deep /deep/er/f /opq/o1 /opq/n /bin/vi /bin/ls; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "present $p"; else echo "absent $p"; fi
done
echo "opq: $(ls -A /opq | tr '\n' ' ')"
echo "data: $(cat /data/f | tr '\n' ' ')"
echo "level: $LEVEL"
echo "wh: $(find / -xdev -name '.wh.*' 2>/dev/null | tr '\n' ' ')"
"""

EXPECTED_CHAIN = """\
absent /one
present /two
absent /etc/keep
present /etc/gone
absent /deep
absent /deep/er/f
absent /opq/o1
present /opq/n
absent /bin/vi
present /bin/ls
opq: n 
data: f more 
level: 2
wh: 
"""


@pytest.fixture(scope="module")
def chain(daemon, dockerd, base, module_made):
    """base -> run CHAIN_STEP1 -> commit l1 -> run CHAIN_STEP2 -> commit l2,
    on both daemons under the same references."""
    repo = uid("chain")
    out = {"l1": f"{repo}:l1", "l2": f"{repo}:l2"}
    for side, d in sides(daemon, dockerd):
        c1 = run_scenario(d, base["ref"], module_made, CHAIN_STEP1, prefix="chain1")
        module_made.image(d, out["l1"])
        d.docker("commit", "-m", "level one", c1, out["l1"])
        c2 = run_scenario(d, out["l1"], module_made, CHAIN_STEP2, prefix="chain2")
        module_made.image(d, out["l2"])
        d.docker("commit", "-c", "ENV LEVEL=2", "-c", 'CMD ["cat","/two"]', c2, out["l2"])
        out[side] = {k: inspect_image(d, out[k]) for k in ("l1", "l2")}
    return out


def test_commit_chain_runs_and_has_three_history_rows(daemon, dockerd, base, chain):
    rows = {}
    for side, d in sides(daemon, dockerd):
        l1, l2 = chain[side]["l1"], chain[side]["l2"]
        assert len(l1["RootFS"]["Layers"]) == 2 and len(l2["RootFS"]["Layers"]) == 3, side
        assert l2["RootFS"]["Layers"][:2] == l1["RootFS"]["Layers"], side
        assert l1["RootFS"]["Layers"][0] == base["layer"], side
        out = run_out(d, chain["l2"], "sh", "-c", CHECK_CHAIN)
        assert out == EXPECTED_CHAIN, (side, out)
        assert run_out(d, chain["l2"]) == "two\n", side
        r = history(d, chain["l2"])
        assert len(r) == 3, (side, r)
        assert r[0]["Id"] == l2["Id"] and r[0]["Tags"] == [chain["l2"]], (side, r[0])
        assert [x["Comment"] for x in r] == ["", "level one", "Imported from -"], (side, r)
        assert all(x["Size"] > 0 for x in r), (side, r)
        rows[side] = [(x["CreatedBy"], x["Size"], x["Comment"]) for x in r]
    assert rows["berth"] == rows["dockerd"]
    # Rows under the top: berth keeps no parent chain (<missing>, no tags).
    assert [x["Id"] for x in history(daemon, chain["l2"])[1:]] == ["<missing>", "<missing>"]


# ---------------------------------------------------------------------------
# 4. docker export
# ---------------------------------------------------------------------------


def export_to(d, name, path) -> str:
    d.docker("export", "-o", path, name, timeout=120)
    return path


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_export_matches_dockerd(daemon, dockerd, base, made, running):
    work = made.tmpdir()
    tars = {}
    for side, d in sides(daemon, dockerd):
        if running:
            name = made.container(d, uid("exp-run"))
            d.docker("run", "-d", "--network", "none", "--name", name, base["ref"], "sh", "-c",
                     SCENARIO + "; echo ready; exec sleep 300")
            wait_for_log(d, name, "ready")
        else:
            name = run_scenario(d, base["ref"], made, prefix="exp-stopped")
        assert inspect_container(d, name)["State"]["Running"] is running, side
        tars[side] = export_to(d, name, os.path.join(work, f"{side}.tar"))
    names = tar_entries(tars["berth"])
    assert "etc/gone" not in names and "olddir" not in names and "opq/o1" not in names
    assert names["perm/f"][1] == "0o600" and names["link"][5] == "/etc/keep"
    assert names["opq/new"][4] == 4 and names["etc/mod"][4] == len("m\nmore\n")
    diffs, allowed = compare_exports(tars["berth"], tars["dockerd"])
    print("export differences allowed (the engine's own paths):\n  " + "\n  ".join(allowed))
    root = [d for d in diffs if d.startswith(".: ")]
    rest = [d for d in diffs if not d.startswith(".: ")]
    assert not rest, ("the exports differ beyond the engine's own paths:\n  " + "\n  ".join(rest))
    # Docker's export (archive.TarWithOptions without IncludeSourceDir)
    # has no entry for the root folder itself.
    assert not root, f"berth's export has a root entry dockerd's has not: {root}"


def test_exported_tar_imports_and_runs(daemon, dockerd, base, made):
    work = made.tmpdir()
    name = run_scenario(daemon, base["ref"], made, prefix="exp-import")
    tar = export_to(daemon, name, os.path.join(work, "berth.tar"))
    for side, d in sides(daemon, dockerd):
        ref = made.image(d, f"{uid('exported')}:v1")
        d.docker("import", tar, ref)
        assert run_out(d, ref, "sh", "-c", CHECK_SCENARIO) == EXPECTED_SCENARIO, side
        assert len(inspect_image(d, ref)["RootFS"]["Layers"]) == 1, side


def test_export_unknown_container_404(daemon, dockerd, made):
    work = made.tmpdir()
    for side, d in sides(daemon, dockerd):
        status, headers, body = d.http("GET", "/containers/nosuch-export-xyz/export")
        assert status == 404, (side, status, body[:200])
        assert json.loads(body) == {"message": "No such container: nosuch-export-xyz"}, side
        out = os.path.join(work, f"{side}.tar")
        p = d.docker("export", "-o", out, "nosuch-export-xyz", check=False)
        assert p.returncode != 0, side
        assert "No such container: nosuch-export-xyz" in p.stderr, (side, p.stderr)
        assert not os.path.exists(out) or os.path.getsize(out) == 0, side


def test_export_of_stopped_container_leaves_nothing_behind(daemon, base, made):
    work = made.tmpdir()
    # A script that can run again (the container is started once more).
    name = run_scenario(daemon, base["ref"], made,
                        "echo x >> /added; mkdir -p /n1/n2; rm -f /data/g", prefix="exp-clean")
    cid = inspect_container(daemon, name)["Id"]
    cdir = os.path.join(daemon.root, "containers", cid)
    assert os.path.isdir(cdir), cdir
    for i in range(2):
        export_to(daemon, name, os.path.join(work, f"{i}.tar"))
        status, headers, body = daemon.http("GET", f"/containers/{name}/export")
        assert status == 200 and len(body) > 1024, status
        left = [m for m in mounts_under(daemon.root) if cid in m or "/export-" in m]
        assert not left, f"mounts left after an export: {left}"
        mount_out = subprocess.run(["mount"], capture_output=True, text=True).stdout
        assert not [l for l in mount_out.splitlines() if cdir in l], mount_out
        leftovers = [e for e in os.listdir(cdir) if e.startswith("export-")]
        assert not leftovers, f"left in {cdir}: {leftovers}"
    # Still a container that starts, with its changes.
    daemon.docker("start", "-a", name)
    assert sorted_changes(changes(daemon, name)), "changes lost"


# ---------------------------------------------------------------------------
# 5. docker save
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(daemon, chain, committed, module_made):
    """Archives from berth: one image by GET /images/{name}/get, several
    (the 3-layer chain top, the 2-layer image it is made from, and the
    committed image that shares only the base) by GET /images/get."""
    work = module_made.tmpdir()
    repo = uid("saved")
    refs = {"l2": f"{repo}:l2", "l1": f"{repo}:l1", "committed": f"{repo}:committed"}
    for key, ref in refs.items():
        module_made.image(daemon, ref)
        daemon.docker("tag", chain[key] if key in ("l1", "l2") else committed["ref"], ref)
    ids = {key: inspect_image(daemon, ref)["Id"] for key, ref in refs.items()}
    layers = {key: inspect_image(daemon, ref)["RootFS"]["Layers"] for key, ref in refs.items()}

    one_path = f"/images/{urllib.parse.quote(refs['l2'], safe='')}/get"
    status, headers, one = api_get_bytes(daemon, one_path)
    assert status == 200, (status, one[:300])
    query = "&".join(f"names={urllib.parse.quote(refs[k], safe='')}"
                     for k in ("l2", "l1", "committed"))
    status, headers, several = api_get_bytes(daemon, f"/images/get?{query}")
    assert status == 200, (status, several[:300])
    paths = {}
    for key, data in (("one", one), ("several", several)):
        paths[key] = os.path.join(work, f"{key}.tar")
        with open(paths[key], "wb") as f:
            f.write(data)
    return {"refs": refs, "ids": ids, "layers": layers, "tars": paths,
            "bytes": {"one": one, "several": several}}


def test_save_archive_shape(saved):
    m = manifest_of(saved["bytes"]["one"])
    assert [e["RepoTags"] for e in m] == [[saved["refs"]["l2"]]]
    assert len(m[0]["Layers"]) == 3
    m = manifest_of(saved["bytes"]["several"])
    assert [e["RepoTags"] for e in m] == [[saved["refs"][k]] for k in ("l2", "l1", "committed")]
    assert [len(e["Layers"]) for e in m] == [3, 2, 2]
    # Shared layers are written once: one member per blob.
    with tarfile.open(fileobj=io.BytesIO(saved["bytes"]["several"])) as t:
        names = t.getnames()
    assert len(names) == len(set(names)), "a member twice"
    layer_paths = {p for e in m for p in e["Layers"]}
    assert len(layer_paths) == 4  # base, l1's, l2's, committed's
    assert {p for p in layer_paths} <= set(names)


def test_save_loads_into_dockerd_and_runs(daemon, dockerd, saved, made):
    for key in ("one", "several"):
        refs = ["l2"] if key == "one" else ["l2", "l1", "committed"]
        for k in refs:
            made.image(dockerd, saved["refs"][k])
        p = dockerd.docker("load", "-i", saved["tars"][key])
        for k in refs:
            assert f"Loaded image: {saved['refs'][k]}" in p.stdout, (key, p.stdout, p.stderr)
            info = inspect_image(dockerd, saved["refs"][k])
            assert info["Id"] == saved["ids"][k], (key, k)
            assert info["RootFS"]["Layers"] == saved["layers"][k], (key, k)
    assert run_out(dockerd, saved["refs"]["l2"], "sh", "-c", CHECK_CHAIN) == EXPECTED_CHAIN
    assert run_out(dockerd, saved["refs"]["l2"]) == "two\n"
    assert run_out(dockerd, saved["refs"]["committed"], "sh", "-c",
                   CHECK_SCENARIO) == EXPECTED_SCENARIO
    # dockerd's history of what berth saved is berth's (berth's image has
    # the chain's tag too).
    rows = {side: history(d, saved["refs"]["l2"]) for side, d in sides(daemon, dockerd)}
    assert rows["dockerd"][0]["Tags"] == [saved["refs"]["l2"]]
    assert saved["refs"]["l2"] in rows["berth"][0]["Tags"]
    strip = lambda r: {k: v for k, v in r.items() if k != "Tags"}  # noqa: E731
    assert [strip(r) for r in rows["dockerd"]] == [strip(r) for r in rows["berth"]]
    assert [r["Tags"] for r in rows["dockerd"][1:]] == [None, None]


def test_save_loads_into_fresh_berth_and_runs(saved, berth_factory):
    fresh = berth_factory().start()
    # berth's own CLI takes the archive too.
    p = subprocess.run([fresh.bin, "load", "-H", fresh.host, "-i", saved["tars"]["one"]],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and f"Loaded image: {saved['refs']['l2']}" in p.stdout, p
    p = fresh.docker("load", "-i", saved["tars"]["several"])
    for k in ("l2", "l1", "committed"):
        assert f"Loaded image: {saved['refs'][k]}" in p.stdout, p.stdout
    listed = fresh.docker("images", "--no-trunc", "--format",
                          "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert sorted(listed.splitlines()) == sorted(f"{saved['refs'][k]} {saved['ids'][k]}"
                                                 for k in ("l2", "l1", "committed"))
    for k in ("l2", "l1", "committed"):
        info = inspect_image(fresh, saved["refs"][k])
        assert info["Id"] == saved["ids"][k] and info["RepoTags"] == [saved["refs"][k]], k
        assert info["RootFS"]["Layers"] == saved["layers"][k], k
    assert run_out(fresh, saved["refs"]["l2"], "sh", "-c", CHECK_CHAIN) == EXPECTED_CHAIN
    assert run_out(fresh, saved["refs"]["committed"], "sh", "-c",
                   CHECK_SCENARIO) == EXPECTED_SCENARIO


def test_save_names_resolve_like_dockerd(daemon, dockerd, base, made):
    """By ID (full or short): RepoTags null; a repository without a tag:
    all its tags; repo:tag: that tag. Same on both daemons."""
    repo, other = uid("savenames"), uid("saveother")
    got = {}
    for side, d in sides(daemon, dockerd):
        for t in (f"{repo}:a", f"{repo}:b", f"{other}:c"):
            made.image(d, t)
            d.docker("tag", base["ref"], t)
        iid = inspect_image(d, base["ref"])["Id"]
        cases = {"id": iid, "short-id": iid[7:19], "repo": repo, "repo:tag": f"{repo}:b",
                 "repo+other": [repo, f"{other}:c"]}
        for case, names in cases.items():
            names = names if isinstance(names, list) else [names]
            query = "&".join(f"names={urllib.parse.quote(n, safe='')}" for n in names)
            status, headers, body = api_get_bytes(d, f"/images/get?{query}")
            assert status == 200, (side, case, status, body[:300])
            tags = [sorted(e["RepoTags"]) if e["RepoTags"] is not None else None
                    for e in manifest_of(body)]
            got[(side, case)] = tags
    expected = {"id": [None], "short-id": [None], "repo": [[f"{repo}:a", f"{repo}:b"]],
                "repo:tag": [[f"{repo}:b"]],
                "repo+other": [sorted([f"{repo}:a", f"{repo}:b", f"{other}:c"])]}
    for case, tags in expected.items():
        assert got[("dockerd", case)] == tags, ("reference", case, got[("dockerd", case)])
        assert got[("berth", case)] == tags, (case, got[("berth", case)])


def test_save_unknown_name_is_404_without_output(daemon, dockerd, base, made):
    work = made.tmpdir()
    for side, d in sides(daemon, dockerd):
        for path in ("/images/nosuch-save-xyz:1/get",
                     f"/images/get?names={urllib.parse.quote(base['ref'])}"
                     "&names=nosuch-save-xyz:1"):
            status, headers, body = api_get_bytes(d, path)
            assert status == 404, (side, path, status, body[:200])
            assert (headers.get("Content-Type") or "").startswith("application/json"), (side, path)
            assert set(json.loads(body)) == {"message"}, (side, body[:200])
        out = os.path.join(work, f"{side}.tar")
        p = d.docker("save", "-o", out, base["ref"], "nosuch-save-xyz:1", check=False)
        assert p.returncode != 0, side
        assert not os.path.exists(out), f"{side}: docker save left {out}"


# ---------------------------------------------------------------------------
# 6. docker history
# ---------------------------------------------------------------------------


def test_history_of_imported_image_matches_dockerd(daemon, dockerd, base):
    rows = {side: history(d, base["ref"]) for side, d in sides(daemon, dockerd)}
    for side, d in sides(daemon, dockerd):
        [row] = rows[side]
        assert row["Id"] == inspect_image(d, base["ref"])["Id"], side
        assert row["Tags"] == [base["ref"]], side
    strip = lambda r: {k: v for k, v in r.items() if k not in ("Id", "Created")}  # noqa: E731
    assert [strip(r) for r in rows["berth"]] == [strip(r) for r in rows["dockerd"]]
    assert rows["berth"][0]["CreatedBy"] == "" and rows["berth"][0]["Comment"] == "Imported from -"
    outs = {side: d.docker("history", "--no-trunc", "--format",
                           "{{.CreatedBy}}|{{.Size}}|{{.Comment}}", base["ref"]).stdout
            for side, d in sides(daemon, dockerd)}
    assert outs["berth"] == outs["dockerd"]


def test_history_of_loaded_image_matches_dockerd(daemon, dockerd, base, made):
    """An image as a pull gives it (no local parents): built on dockerd by
    two commits, saved, removed from dockerd and loaded back into it; the
    same archive loaded into berth."""
    work = made.tmpdir()
    repo = uid("loadedhist")
    l1, l2 = f"{repo}:1", f"{repo}:2"
    c1 = run_scenario(dockerd, base["ref"], made, "echo a > /a1", prefix="hist1")
    made.image(dockerd, l1)
    dockerd.docker("commit", "-m", "one", c1, l1)
    c2 = run_scenario(dockerd, l1, made, "rm /etc/keep; echo bb > /b1", prefix="hist2")
    made.image(dockerd, l2)
    dockerd.docker("commit", "-c", "ENV X=1", c2, l2)
    dockerd.docker("rm", c1, c2)
    tar = os.path.join(work, "hist.tar")
    dockerd.docker("save", "-o", tar, l2)
    dockerd.docker("rmi", l2, l1)
    for side, d in sides(daemon, dockerd):
        made.image(d, l2)
        d.docker("load", "-i", tar)
    rows = {side: history(d, l2) for side, d in sides(daemon, dockerd)}
    r = rows["dockerd"]
    assert [x["Id"] for x in r][1:] == ["<missing>", "<missing>"], r
    assert [x["Tags"] for x in r] == [[l2], None, None], r
    assert rows["berth"] == rows["dockerd"]
    fmt = "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}"
    outs = {side: d.docker("history", "--no-trunc", "--format", fmt, l2).stdout
            for side, d in sides(daemon, dockerd)}
    assert outs["berth"] == outs["dockerd"]


def test_a_freeze_cut_by_a_crash_is_thawed_at_restart(berth_factory):
    """A commit freezes a running container; a daemon killed meanwhile
    must not leave it frozen: the restarted daemon thaws every container
    it does not record as paused, and leaves a paused one paused."""
    d = berth_factory().start()
    image = import_busybox(d)
    ids = {}
    for name in ("cutfreeze", "paused"):
        d.docker("run", "-d", "--name", name, image, "sleep", "3600")
        ids[name] = d.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    d.docker("pause", "paused")
    freeze_behind_berths_back(ids["cutfreeze"])
    assert freezer_state(ids["cutfreeze"]) in ("FROZEN", "1")
    d.kill9()
    d.start()
    assert freezer_state(ids["cutfreeze"]) in ("THAWED", "0")
    assert d.docker("exec", "cutfreeze", "echo", "alive", timeout=30).stdout == "alive\n"
    assert freezer_state(ids["paused"]) in ("FROZEN", "1")
    assert d.docker("inspect", "-f", "{{.State.Paused}}", "paused").stdout.strip() == "true"
    d.docker("unpause", "paused")
    d.docker("rm", "-f", "cutfreeze", "paused")


def test_images_filtered_by_reference_like_dockerd(daemon, dockerd, base, made):
    """`docker images REPO` and a glob pattern list what dockerd lists:
    only the matching references of the matching images."""
    repo = uid("listref")
    got = {}
    for side, d in sides(daemon, dockerd):
        for t in (f"{repo}:a", f"{repo}:b", f"{repo}x:c"):
            d.docker("tag", base["ref"], made.image(d, t))
        for pattern in (repo, f"{repo}*:[ac]", f"{repo}:b"):
            out = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}", pattern).stdout
            got[(side, pattern)] = sorted(out.split())
    assert got[("berth", repo)] == [f"{repo}:a", f"{repo}:b"]
    for pattern in (repo, f"{repo}*:[ac]", f"{repo}:b"):
        assert got[("berth", pattern)] == got[("dockerd", pattern)], pattern
