"""Must-show 5: bad input to berth's container and image API is refused
cleanly: the right status and message, and nothing is created (no
container, no image, no file outside berth's root).

Hostile archives are made with python's tarfile, setting TarInfo names and
link names directly.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
import uuid
from urllib.parse import quote

import pytest

from busybox_image import berth_with_cleanup, import_busybox, temp_folder
from conftest import error_message




@pytest.fixture
def outside():
    """A host folder outside berth's root that hostile archives aim at."""
    yield from temp_folder("berth-outside-")


def container_ids(daemon) -> set[str]:
    status, body = daemon.api("GET", "/containers/json?all=1")
    assert status == 200, body
    return {c["Id"] for c in body}


def image_ids(daemon) -> set[str]:
    status, body = daemon.api("GET", "/images/json?all=1")
    assert status == 200, body
    return {i["Id"] for i in body}


def image_tags(daemon) -> set[str]:
    status, body = daemon.api("GET", "/images/json?all=1")
    assert status == 200, body
    return {t for i in body for t in (i.get("RepoTags") or [])}


def create(daemon, body, name=None):
    path = "/containers/create" + (f"?name={quote(name)}" if name else "")
    status, headers, data = daemon.http("POST", path, body=body)
    return status, headers, data


def files_named(root, basename) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if n == basename:
                found.append(os.path.join(dirpath, n))
    return found


# --------------------------------------------------------------------------
# tar helpers
# --------------------------------------------------------------------------


def add_dir(t: tarfile.TarFile, name: str):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = int(time.time())
    t.addfile(ti)


def add_file(t: tarfile.TarFile, name: str, data: bytes = b"pwned\n"):
    ti = tarfile.TarInfo(name)  # name set as is: no normalisation
    ti.size = len(data)
    ti.mode = 0o644
    ti.mtime = int(time.time())
    t.addfile(ti, io.BytesIO(data))


def add_symlink(t: tarfile.TarFile, name: str, target: str):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    ti.mode = 0o777
    t.addfile(ti)


def add_hardlink(t: tarfile.TarFile, name: str, target: str):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE
    ti.linkname = target
    ti.mode = 0o644
    t.addfile(ti)


def make_tar(build) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        build(t)
    return buf.getvalue()


def post_import(daemon, tar: bytes, repo: str, changes=()):
    q = f"/images/create?fromSrc=-&repo={quote(repo)}"
    for c in changes:
        q += "&changes=" + quote(c)
    status, headers, body = daemon.http("POST", q, body=tar)
    return status, headers, body


def import_failed(status, body: bytes) -> bool:
    """An import is refused either by an HTTP error status or, once the 200
    stream has begun, by an in-band error message."""
    if status >= 400:
        return True
    for line in body.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("error") or msg.get("errorDetail"):
            return True
    return False


# --------------------------------------------------------------------------
# unknown image
# --------------------------------------------------------------------------


def test_docker_run_unknown_image(daemon, uniq):
    before = container_ids(daemon)
    name = uniq + "-run"
    p = daemon.docker("run", "--name", name, "nosuch", "true", check=False)
    assert p.returncode != 0
    assert p.returncode == 125
    assert "Unable to find image 'nosuch:latest' locally" in p.stderr
    assert container_ids(daemon) == before
    status, _, _ = daemon.http("GET", f"/containers/{name}/json")
    assert status == 404


def test_create_unknown_image_404(daemon, uniq):
    before = container_ids(daemon)
    name = uniq + "-api"
    status, headers, body = create(daemon, {"Image": "nosuch", "Cmd": ["true"]}, name=name)
    assert status == 404
    assert error_message(headers, body) == "No such image: nosuch:latest"
    status, headers, body = create(daemon, {"Image": "nosuch:2", "Cmd": ["true"]})
    assert status == 404
    assert error_message(headers, body) == "No such image: nosuch:2"
    assert container_ids(daemon) == before
    assert daemon.http("GET", f"/containers/{name}/json")[0] == 404


def test_create_missing_image_field(daemon):
    before = container_ids(daemon)
    status, headers, body = create(daemon, {"Cmd": ["true"]})
    assert 400 <= status < 500, body
    assert container_ids(daemon) == before


# --------------------------------------------------------------------------
# import: bad changes, hostile archives
# --------------------------------------------------------------------------


def test_import_bad_change_cli(daemon, outside):
    repo = f"badchange-{uuid.uuid4().hex[:8]}:1"
    tar = os.path.join(outside, "ok.tar")
    with open(tar, "wb") as f:
        f.write(make_tar(lambda t: add_file(t, "hello", b"hi\n")))
    before_ids, before_tags = image_ids(daemon), image_tags(daemon)
    p = daemon.docker("import", "-c", "RUN x", tar, repo, check=False)
    assert p.returncode != 0
    assert "run is not a valid change command" in p.stderr.lower()
    assert image_ids(daemon) == before_ids
    assert image_tags(daemon) == before_tags


def test_import_bad_change_api(daemon):
    repo = f"badchange-{uuid.uuid4().hex[:8]}"
    before_ids = image_ids(daemon)
    tar = make_tar(lambda t: add_file(t, "hello", b"hi\n"))
    for change in ("RUN x", "FROM busybox", "ENV", "nonsense words"):
        status, headers, body = post_import(daemon, tar, repo, changes=[change])
        assert status == 400, (change, status, body)
    status, headers, body = post_import(daemon, tar, repo, changes=["ENV A=1", "RUN x"])
    assert status == 400
    assert "run is not a valid change command" in error_message(headers, body)
    assert image_ids(daemon) == before_ids
    assert daemon.http("GET", f"/images/{repo}/json")[0] == 404


def _assert_nothing_outside(daemon, outside, marker):
    assert os.listdir(outside) == [] or set(os.listdir(outside)) <= {"keep"}, os.listdir(outside)
    assert not os.path.exists(os.path.join("/tmp", marker))
    assert not os.path.exists(os.path.join(os.path.dirname(daemon.root), marker))
    # Not even inside berth's own folder, outside any layer.
    assert files_named(daemon.dir, marker) == []


def test_import_dotdot_entries_refused(daemon, outside):
    marker = "escape-" + uuid.uuid4().hex[:8]
    deep = "../" * 24 + outside.lstrip("/") + "/" + marker

    def build(t):
        add_dir(t, "ok")
        add_file(t, "ok/f", b"fine\n")
        add_file(t, "../" + marker)
        add_file(t, "ok/../../" + marker)
        add_file(t, deep)

    repo = f"hostile-{uuid.uuid4().hex[:8]}"
    before = image_ids(daemon)
    status, headers, body = post_import(daemon, make_tar(build), repo)
    assert status == 400, (status, body)
    assert import_failed(status, body)
    _assert_nothing_outside(daemon, outside, marker)
    assert image_ids(daemon) == before
    assert daemon.http("GET", f"/images/{repo}/json")[0] == 404


def test_import_absolute_symlink_then_write_through_refused(daemon, outside):
    marker = "pwned-" + uuid.uuid4().hex[:8]

    def build(t):
        add_symlink(t, "evil", outside)          # absolute symlink to a host folder
        add_file(t, "evil/" + marker)           # a file written through it

    repo = f"hostile-{uuid.uuid4().hex[:8]}"
    before = image_ids(daemon)
    status, headers, body = post_import(daemon, make_tar(build), repo)
    assert import_failed(status, body), (status, body)
    assert status == 400, (status, body)
    _assert_nothing_outside(daemon, outside, marker)
    assert image_ids(daemon) == before


def test_import_relative_symlink_escape_refused(daemon, outside):
    marker = "pwned-" + uuid.uuid4().hex[:8]

    def build(t):
        add_dir(t, "a")
        add_symlink(t, "a/up", "../" * 24 + outside.lstrip("/"))
        add_file(t, "a/up/" + marker)

    repo = f"hostile-{uuid.uuid4().hex[:8]}"
    before = image_ids(daemon)
    status, headers, body = post_import(daemon, make_tar(build), repo)
    assert import_failed(status, body), (status, body)
    _assert_nothing_outside(daemon, outside, marker)
    assert image_ids(daemon) == before


def test_import_hardlink_to_host_file_not_linked(daemon, outside):
    host_file = os.path.join(outside, "keep")
    with open(host_file, "w") as f:
        f.write("host secret\n")
    marker = "hl-" + uuid.uuid4().hex[:8]

    def build(t):
        add_hardlink(t, marker, host_file)                    # absolute
        add_hardlink(t, marker + "b", "../" * 24 + host_file.lstrip("/"))  # escaping

    repo = f"hostile-{uuid.uuid4().hex[:8]}"
    status, headers, body = post_import(daemon, make_tar(build), repo)
    assert import_failed(status, body), (status, body)
    assert os.stat(host_file).st_nlink == 1
    with open(host_file) as f:
        assert f.read() == "host secret\n"
    assert files_named(daemon.dir, marker) == []


def test_import_absolute_entry_stays_inside(daemon, outside, image, uniq):
    """An entry named with a leading / is relative to the image root (Docker
    strips the /): accepted or refused, it must not land on the host."""
    marker = "abs-" + uuid.uuid4().hex[:8]
    repo = f"absentry-{uuid.uuid4().hex[:8]}:1"
    status, headers, body = post_import(
        daemon, make_tar(lambda t: add_file(t, outside + "/" + marker)), repo)
    assert os.listdir(outside) == []
    if not import_failed(status, body):
        daemon.api("DELETE", f"/images/{repo}?force=1")


def _save_archive(layer: bytes, repo_tag: str, outer_extra=None) -> bytes:
    """A `docker save` style archive with one (uncompressed) layer."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z"}],
    }).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [repo_tag],
                            "Layers": ["layer0/layer.tar"]}]).encode()

    def build(t):
        add_file(t, cfg_name, config)
        add_dir(t, "layer0")
        add_file(t, "layer0/layer.tar", layer)
        add_file(t, "manifest.json", manifest)
        if outer_extra:
            outer_extra(t)
    return make_tar(build)


def post_load(daemon, archive: bytes):
    return daemon.http("POST", "/images/load?quiet=1", body=archive,
                       headers={"Content-Type": "application/x-tar"})


def test_load_sanity_archive_works(daemon, uniq):
    """The hand-made archive format is right: a harmless one loads."""
    repo_tag = f"handmade-{uuid.uuid4().hex[:8]}:1"
    layer = make_tar(lambda t: add_file(t, "hello", b"hi\n"))
    status, headers, body = post_load(daemon, _save_archive(layer, repo_tag))
    assert status == 200 and not import_failed(status, body), body
    assert daemon.http("GET", f"/images/{repo_tag}/json")[0] == 200
    daemon.api("DELETE", f"/images/{repo_tag}?force=1")


def test_load_layer_with_dotdot_refused(daemon, outside):
    marker = "ldescape-" + uuid.uuid4().hex[:8]
    repo_tag = f"hostile-load-{uuid.uuid4().hex[:8]}:1"

    def layer_build(t):
        add_file(t, "fine", b"ok\n")
        add_file(t, "../" * 24 + outside.lstrip("/") + "/" + marker)
        add_file(t, "../" + marker)
    status, headers, body = post_load(daemon, _save_archive(make_tar(layer_build), repo_tag))
    assert import_failed(status, body), (status, body)
    _assert_nothing_outside(daemon, outside, marker)
    assert daemon.http("GET", f"/images/{repo_tag}/json")[0] == 404


def test_load_layer_symlink_write_through_refused(daemon, outside):
    marker = "ldsym-" + uuid.uuid4().hex[:8]
    repo_tag = f"hostile-load-{uuid.uuid4().hex[:8]}:1"

    def layer_build(t):
        add_symlink(t, "evil", outside)
        add_file(t, "evil/" + marker)
    status, headers, body = post_load(daemon, _save_archive(make_tar(layer_build), repo_tag))
    assert import_failed(status, body), (status, body)
    _assert_nothing_outside(daemon, outside, marker)
    assert daemon.http("GET", f"/images/{repo_tag}/json")[0] == 404


def test_load_outer_archive_dotdot_entry(daemon, outside):
    marker = "outer-" + uuid.uuid4().hex[:8]
    repo_tag = f"hostile-load-{uuid.uuid4().hex[:8]}:1"
    layer = make_tar(lambda t: add_file(t, "hello", b"hi\n"))
    archive = _save_archive(layer, repo_tag, outer_extra=lambda t: (
        add_file(t, "../" + marker),
        add_file(t, "../" * 24 + outside.lstrip("/") + "/" + marker)))
    status, headers, body = post_load(daemon, archive)
    _assert_nothing_outside(daemon, outside, marker)
    if not import_failed(status, body):
        daemon.api("DELETE", f"/images/{repo_tag}?force=1")


def test_load_bad_diff_id_refused(daemon):
    repo_tag = f"baddiff-{uuid.uuid4().hex[:8]}:1"
    layer = make_tar(lambda t: add_file(t, "hello", b"hi\n"))
    archive = _save_archive(layer, repo_tag)
    # Swap in a different layer with the same size: the DiffID no longer matches.
    other = make_tar(lambda t: add_file(t, "hello", b"ho\n"))
    assert len(other) == len(layer)
    archive = archive.replace(layer, other)
    status, headers, body = post_load(daemon, archive)
    assert import_failed(status, body), (status, body)
    assert daemon.http("GET", f"/images/{repo_tag}/json")[0] == 404


def test_load_garbage_refused(daemon):
    before = image_ids(daemon)
    status, headers, body = post_load(daemon, b"this is not a tar archive" * 100)
    assert import_failed(status, body), (status, body)
    assert image_ids(daemon) == before


# --------------------------------------------------------------------------
# names, removed containers, TTY, malformed requests
# --------------------------------------------------------------------------


def test_duplicate_name_409(daemon, image, uniq):
    name = uniq + "-dup"
    status, headers, body = create(daemon, {"Image": image, "Cmd": ["true"]}, name=name)
    assert status == 201, body
    first = json.loads(body)["Id"]
    before = container_ids(daemon)
    status, headers, body = create(daemon, {"Image": image, "Cmd": ["true"]}, name=name)
    assert status == 409
    assert error_message(headers, body) == (
        f'Conflict. The container name "/{name}" is already in use by container "{first}". '
        "You have to remove (or rename) that container to be able to reuse that name.")
    assert container_ids(daemon) == before

    p = daemon.docker("run", "--name", name, image, "true", check=False)
    assert p.returncode == 125
    assert f'Conflict. The container name "/{name}" is already in use' in p.stderr
    assert container_ids(daemon) == before

    # A leading / in the request is the same name.
    status, headers, body = create(daemon, {"Image": image, "Cmd": ["true"]}, name="/" + name)
    assert status == 409


def test_name_free_again_after_rm(daemon, image, uniq):
    name = uniq + "-reuse"
    daemon.docker("create", "--name", name, image, "true")
    daemon.docker("rm", name)
    daemon.docker("create", "--name", name, image, "true")


def test_start_removed_container_404(daemon, image, uniq):
    name = uniq + "-gone"
    status, headers, body = create(daemon, {"Image": image, "Cmd": ["true"]}, name=name)
    cid = json.loads(body)["Id"]
    assert daemon.http("DELETE", f"/containers/{cid}")[0] == 204
    for ref in (cid, name):
        status, headers, body = daemon.http("POST", f"/containers/{ref}/start")
        assert status == 404
        assert error_message(headers, body) == f"No such container: {ref}"
    p = daemon.docker("start", name, check=False)
    assert p.returncode != 0
    assert f"No such container: {name}" in p.stderr


def test_unknown_container_everywhere_404(daemon):
    for method, path in [("GET", "/containers/nosuchctr/json"),
                         ("POST", "/containers/nosuchctr/start"),
                         ("POST", "/containers/nosuchctr/stop"),
                         ("POST", "/containers/nosuchctr/kill"),
                         ("POST", "/containers/nosuchctr/wait"),
                         ("GET", "/containers/nosuchctr/logs?stdout=1"),
                         ("DELETE", "/containers/nosuchctr")]:
        status, headers, body = daemon.http(method, path)
        assert status == 404, (method, path, status, body)
        assert error_message(headers, body) == "No such container: nosuchctr", (method, path)


def test_terminal_requests_checked(daemon, image, uniq):
    """A TTY container's resize and attach options: bad sizes and detach
    keys are refused (moby's words) and change nothing; a stopped
    container cannot be resized."""
    name = uniq + "-tty"
    daemon.docker("create", "-t", "--name", name, image, "true")
    for query in ("h=x&w=10", "h=10", "h=-1&w=10", "h=10&w=99999"):
        status, headers, body = daemon.http("POST", f"/containers/{name}/resize?{query}")
        assert status == 400, (query, status, body)
        assert "strconv.Atoi" in error_message(headers, body)
    status, headers, body = daemon.http("POST", f"/containers/{name}/resize?h=10&w=10")
    assert status == 409 and "is not running" in error_message(headers, body)
    status, headers, body = daemon.http(
        "POST", f"/containers/{name}/attach?stream=1&stdin=1&detachKeys=ctrl-1")
    assert status == 400
    assert error_message(headers, body) == "Invalid detach keys (ctrl-1) provided"
    assert json.loads(daemon.docker("inspect", name).stdout)[0]["State"]["Status"] == "created"


@pytest.mark.parametrize("bad", ["a b", "a", "-x", "a/b", "é1", "x" * 3 + "!", ".hidden"])
def test_invalid_container_name_400(daemon, image, bad):
    before = container_ids(daemon)
    status, headers, body = create(daemon, {"Image": image, "Cmd": ["true"]}, name=bad)
    assert status == 400, (bad, status, body)
    assert error_message(headers, body) == (
        f"Invalid container name ({bad}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    assert container_ids(daemon) == before


def test_invalid_name_cli(daemon, image):
    p = daemon.docker("run", "--name", "a b", image, "true", check=False)
    assert p.returncode == 125
    assert "Invalid container name (a b)" in p.stderr


@pytest.mark.parametrize("body", [
    '{"Image": "x",',
    "not json",
    "[1, 2]",
    '{"Image": 5}',
    '{"Image": "x", "Cmd": {"a": 1}}',
    '{"Image": "x", "HostConfig": {"Binds": "notalist"}}',
])
def test_create_malformed_json_400(daemon, body):
    before = container_ids(daemon)
    status, headers, data = daemon.http("POST", "/containers/create", body=body,
                                        headers={"Content-Type": "application/json"})
    assert status == 400, (body, status, data)
    assert error_message(headers, data)
    assert container_ids(daemon) == before


def test_create_empty_body_400(daemon):
    status, headers, data = daemon.http("POST", "/containers/create",
                                        headers={"Content-Type": "application/json"})
    assert status == 400
    assert error_message(headers, data) == "invalid JSON: got EOF while reading request body"


def test_create_no_command_400(daemon, image):
    # The busybox image was imported without CMD.
    status, headers, data = create(daemon, {"Image": image})
    assert status == 400
    assert error_message(headers, data) == "no command specified"


def test_bad_bind_specs_400(daemon, image, uniq):
    before = container_ids(daemon)
    for binds in (["relative/path:/data"], ["/tmp:relative"], ["/tmp:/data:bogusmode"], [":/x"]):
        status, headers, data = create(daemon, {"Image": image, "Cmd": ["true"],
                                                "HostConfig": {"Binds": binds}})
        assert status == 400, (binds, status, data)
    assert container_ids(daemon) == before


def test_misc_bad_parameters(daemon, image, uniq):
    name = uniq + "-misc"
    daemon.docker("run", "-d", "--name", name, image, "sleep", "300")
    cases = [
        ("POST", f"/containers/{name}/wait?condition=bogus", 400, 'invalid condition: "bogus"'),
        ("GET", f"/containers/{name}/logs", 400,
         "Bad parameters: you must choose at least one stream"),
        ("POST", f"/containers/{name}/kill?signal=BOGUS", 400, None),
        ("DELETE", f"/containers/{name}", 409,
         f'cannot remove container "{name}": container is running: stop the container '
         "before removing or force remove"),
        ("POST", f"/containers/{name}/start", 304, None),
    ]
    for method, path, want_status, want_msg in cases:
        status, headers, body = daemon.http(method, path)
        assert status == want_status, (method, path, status, body)
        if want_msg:
            assert error_message(headers, body) == want_msg
    # Still running after all that.
    status, body = daemon.api("GET", f"/containers/{name}/json")
    assert body["State"]["Running"] is True
