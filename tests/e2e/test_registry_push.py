"""`docker push` and `GET /distribution/{name}/json` against real
registries on loopback (Debian's docker-registry, registry_helpers.py).

Images reach berth by `docker import` and by `docker load` of archives
written here (a busybox layer, /marker, and layers of random bytes so that
each archive's layers are its own), and by pulls of images a private
dockerd and skopeo pushed (registry_images.py). Where Docker's behaviour
is the spec, a private dockerd (20.10) does the same in the same run:
it pulls and runs what berth pushed, pushes the same archive, and answers
the same /distribution look-ups.

One berth, one private dockerd and two registries serve the module (a
source registry holding dockerd's and skopeo's images, and the registry
berth pushes to); every test pushes to repositories of its own.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import uuid
from urllib.parse import quote, urlencode

import pytest

from busybox_image import berth_with_cleanup, make_rootfs, temp_folder
from conftest import UnixHTTPConnection
from registry_helpers import (  # noqa: F401  (fixtures)
    DOCKER_MANIFEST,
    FlakyUploads,
    HOST_ARCH,
    OCI_INDEX,
    OCI_MANIFEST,
    free_port,
    layer_statuses,
    progress_messages,
    registry_factory,
    registry_factory_module,
    sha256_digest,
    short_id,
    stream_error,
)
from registry_images import (
    CREATED,
    PATH_ENV,
    busybox_tar,
    marker_tar,
    push_oci,
    push_schema2,
    tar_files,
)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
NO_AUTH = base64.urlsafe_b64encode(b"{}").decode()  # what the docker CLI sends logged out
DIGEST_LINE = re.compile(r"^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)$", re.M)


def uniq() -> str:
    return uuid.uuid4().hex[:10]


# ---------------------------------------------------------------------------
# Images: `docker save` archives written here, `docker import` of a rootfs
# ---------------------------------------------------------------------------


class Archive:
    """A `docker save` archive (manifest.json, config, one tar a layer) of
    the busybox layer (unless not ``base``), /marker holding ``marker`` and
    ``extra`` layers of random bytes (so no other archive has them), tagged
    ``ref``."""

    def __init__(self, folder: str, ref: str, marker: str, extra: int = 0, extra_size: int = 200_000,
                 base: bool = True):
        self.ref = ref
        self.marker = marker
        self.layers = ([busybox_tar()] if base else []) + [marker_tar(marker)] + [
            tar_files([(f"data-{i}-{marker}", os.urandom(extra_size))]) for i in range(extra)]
        self.diff_ids = [sha256_digest(t) for t in self.layers]
        config = {"architecture": HOST_ARCH, "os": "linux", "created": CREATED,
                  "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
                  "rootfs": {"type": "layers", "diff_ids": self.diff_ids},
                  "history": [{"created": CREATED, "created_by": f"layer {i}"}
                              for i in range(len(self.layers))]}
        self.config = json.dumps(config, separators=(",", ":")).encode()
        self.id = sha256_digest(self.config)
        self.path = os.path.join(folder, f"{uniq()}.tar")
        with tarfile.open(self.path, mode="w") as tar:
            def add(name, data):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), 1700000000, 0o644
                tar.addfile(ti, io.BytesIO(data))
            add(self.id.split(":")[1] + ".json", self.config)
            names = [f"{d.split(':')[1]}/layer.tar" for d in self.diff_ids]
            for name, data in zip(names, self.layers):
                add(name, data)
            add("manifest.json", json.dumps([{"Config": self.id.split(":")[1] + ".json",
                                              "RepoTags": [ref], "Layers": names}]).encode())

    @property
    def ids_top_first(self) -> list[str]:
        return [short_id(d) for d in reversed(self.diff_ids)]

    def load(self, daemon) -> str:
        out = daemon.docker("load", "-i", self.path, timeout=300).stdout
        assert f"Loaded image: {self.ref}" in out, out
        return self.ref


def import_with_marker(daemon, folder: str, ref: str, marker: str) -> str:
    """`docker import` of the busybox rootfs plus /marker (one layer)."""
    root = make_rootfs(tempfile.mkdtemp(prefix="pushroot-", dir=folder))
    with open(os.path.join(root, "marker"), "w") as f:
        f.write(marker + "\n")
    tar = os.path.join(folder, f"{uniq()}-rootfs.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    daemon.docker("import", tar, ref)
    shutil.rmtree(root, ignore_errors=True)
    os.remove(tar)
    return ref


# ---------------------------------------------------------------------------
# Pushes and what a daemon says about images
# ---------------------------------------------------------------------------


def push_api(daemon, name: str, tag: str | None = None, auth: str | None = NO_AUTH,
             timeout: float = 300.0):
    """`POST /images/{name}/push[?tag=]` on ``daemon``: (HTTP status, raw
    body, messages)."""
    path = f"/images/{name}/push" + (f"?{urlencode({'tag': tag})}" if tag is not None else "")
    headers = {"X-Registry-Auth": auth} if auth is not None else {}
    status, _, body = daemon.http("POST", path, headers=headers, timeout=timeout)
    if status != 200:
        return status, body, [json.loads(body)]
    return status, body, progress_messages(body)


def aux_of(messages: list[dict]) -> list[dict]:
    return [m["aux"] for m in messages if "aux" in m]


def cli_digests(out: str) -> dict[str, tuple[str, int]]:
    """{tag: (digest, size)} from `docker push`'s output."""
    return {t: (d, int(s)) for t, d, s in DIGEST_LINE.findall(out)}


def inspect(daemon, ref: str) -> dict:
    status, body = daemon.api("GET", f"/images/{ref}/json")
    assert status == 200, (ref, status, body)
    return body


def repo_digests(daemon, ref: str) -> list[str]:
    return inspect(daemon, ref)["RepoDigests"]


def daemon_error(proc) -> str:
    return proc.stderr.strip().removeprefix("Error response from daemon: ")


def distribution(daemon, ref: str, auth: str | None = None):
    headers = {"X-Registry-Auth": auth} if auth else {}
    status, _, body = daemon.http("GET", f"/distribution/{quote(ref, safe='/:@')}/json",
                                  headers=headers, timeout=60)
    return status, json.loads(body) if body.strip() else None


def login(daemon, host: str, user: str, password: str):
    return daemon.docker("login", host, "-u", user, "--password-stdin", input=password + "\n",
                         check=False)


def check_schema2(reg, repo: str, tag: str, image: dict) -> dict:
    """The registry's manifest of repo:tag is a Docker schema 2 manifest
    in dockerd's layout (3-space indent) naming ``image``'s config and a
    gzip blob of each of its layers; returns it parsed."""
    m = reg.manifest(repo, tag)
    assert m.media_type == DOCKER_MANIFEST, m.media_type
    assert m.digest == sha256_digest(m.body)
    doc = m.json
    assert m.body == json.dumps(doc, indent=3).encode(), m.body.decode()
    assert list(doc) == ["schemaVersion", "mediaType", "config", "layers"], list(doc)
    assert (doc["schemaVersion"], doc["mediaType"]) == (2, DOCKER_MANIFEST)
    config = reg.blob(repo, doc["config"]["digest"])  # checks the blob's sha256
    assert doc["config"] == {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": image["Id"]}
    assert json.loads(config)["rootfs"]["diff_ids"] == image["RootFS"]["Layers"]
    assert len(doc["layers"]) == len(image["RootFS"]["Layers"])
    for desc, diff_id in zip(doc["layers"], image["RootFS"]["Layers"]):
        blob = reg.blob(repo, desc["digest"])  # checks sha256(blob) == digest
        assert desc == {"mediaType": DOCKER_LAYER, "size": len(blob), "digest": desc["digest"]}
        assert sha256_digest(gzip.decompress(blob)) == diff_id, desc
    return doc


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bd():
    yield from berth_with_cleanup()


@pytest.fixture(scope="module")
def work():
    yield from temp_folder("pushtest-")


@pytest.fixture(scope="module")
def reg(registry_factory_module):  # noqa: F811
    """The plain-HTTP registry berth pushes to."""
    return registry_factory_module()


@pytest.fixture(scope="module")
def sources(registry_factory_module, dockerd):  # noqa: F811
    """Another registry holding a Docker schema 2 image dockerd pushed, an
    OCI image with zstd layers and a multi-platform OCI index (skopeo)."""
    src = registry_factory_module()
    return src, {
        "schema2": push_schema2(dockerd, src, "s2/app", "1", "schema2"),
        "oci-zstd": push_oci(src, "oci/zstd", "1", "oci-zstd", compression="zstd"),
        "multi": push_oci(src, "oci/multi", "1", "multi", platforms=[("amd64", None), ("arm64", "v8")]),
    }


def loaded(bd, work, reg, repo_stem: str, extra: int = 1, **kw) -> tuple[Archive, str]:
    """A fresh archive loaded into berth and tagged ``reg/<stem>-<uniq>:1``."""
    u = uniq()
    arc = Archive(work, f"local-{u}:1", f"m-{u}", extra=extra, **kw)
    arc.load(bd)
    target = f"{reg.host}/{repo_stem}-{u}:1"
    bd.docker("tag", arc.ref, target)
    return arc, target


# ---------------------------------------------------------------------------
# 1. berth pushes, dockerd pulls and runs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["import", "load"])
def test_push_round_trip_to_dockerd(bd, dockerd, reg, work, how):
    u = uniq()
    repo, marker = f"rt/{how}-{u}", f"round-trip-{how}-{u}"
    local = f"local-{u}:1"
    if how == "import":
        import_with_marker(bd, work, local, marker)
    else:
        Archive(work, local, marker, extra=2).load(bd)
    ref = f"{reg.host}/{repo}:1"
    bd.docker("tag", local, ref)
    out = bd.docker("push", ref, timeout=300).stdout
    assert f"The push refers to repository [{reg.host}/{repo}]" in out, out
    [(tag, (digest, size))] = cli_digests(out).items()
    assert tag == "1"

    image = inspect(bd, ref)
    m = reg.manifest(repo, "1")
    assert m.digest == digest and len(m.body) == size
    assert image["RepoDigests"] == [f"{reg.host}/{repo}@{digest}"]
    assert reg.tags(repo) == ["1"]
    check_schema2(reg, repo, "1", image)

    # A real dockerd pulls it and runs it.
    try:
        pulled = dockerd.docker("pull", ref, timeout=300).stdout
        assert f"Digest: {digest}" in pulled, pulled
        run = dockerd.docker("run", "--rm", "--network", "none", ref, "cat", "/marker")
        assert run.stdout == marker + "\n"
        theirs = inspect(dockerd, ref)
        assert theirs["Id"] == image["Id"]
        assert theirs["RootFS"]["Layers"] == image["RootFS"]["Layers"]
        assert theirs["RepoDigests"] == image["RepoDigests"]
    finally:
        dockerd.docker("rmi", "-f", ref, check=False)


def test_commit_push_round_trip_to_dockerd(bd, dockerd, reg, work):
    """A container's changes (a file added, one deleted, one changed, an
    image folder replaced) committed by berth, pushed, pulled and run by
    a real dockerd: it sees every change, whiteouts included."""
    u = uniq()
    local, name = f"local-{u}:1", f"commit-src-{u}"
    import_with_marker(bd, work, local, f"base-{u}")
    bd.docker("run", "--name", name, "--network", "none", local, "sh", "-c",
              f"echo added-{u} > /added && rm /marker && echo changed >> /etc/passwd"
              f" && rm -rf /home && mkdir /home && touch /home/new")
    ref = f"{reg.host}/commit/{u}:1"
    try:
        bd.docker("commit", "-m", "changes", "-c", 'CMD ["cat", "/added"]', name, ref)
        image = inspect(bd, ref)
        assert len(image["RootFS"]["Layers"]) == 2, image["RootFS"]
        out = bd.docker("push", ref, timeout=300).stdout
        [(_, (digest, _))] = cli_digests(out).items()
        check_schema2(reg, f"commit/{u}", "1", image)
        try:
            dockerd.docker("pull", ref, timeout=300)
            assert inspect(dockerd, ref)["Id"] == image["Id"]
            assert dockerd.docker("run", "--rm", "--network", "none", ref).stdout == f"added-{u}\n"
            seen = dockerd.docker("run", "--rm", "--network", "none", ref, "sh", "-c",
                                  "test -e /marker && echo marker; tail -n1 /etc/passwd; ls -A /home")
            assert seen.stdout.split() == ["changed", "new"], seen.stdout
            assert repo_digests(bd, ref) == [f"{reg.host}/commit/{u}@{digest}"]
        finally:
            dockerd.docker("rmi", "-f", ref, check=False)
    finally:
        bd.docker("rm", "-f", name, check=False)
        bd.docker("rmi", "-f", ref, local, check=False)


def test_push_retries_an_upload_the_registry_failed(bd, reg, work):
    """A 500 to a blob upload (a distribution registry's answer to some
    concurrent pushes of one blob): the layer is sent again after
    dockerd's count-down, and the push succeeds."""
    flaky = FlakyUploads(reg.host, failures=1)
    try:
        u = uniq()
        arc = Archive(work, f"local-{u}:1", f"m-{u}", extra=1)
        arc.load(bd)
        name = f"{flaky.host}/retry/{u}"
        bd.docker("tag", arc.ref, f"{name}:1")
        status, _, messages = push_api(bd, name, "1")
        assert status == 200 and not stream_error(messages), messages[-3:]
        assert flaky.failed == 1
        assert any(m.get("status") == "Retrying in 5 seconds" for m in messages), messages
        [aux] = aux_of(messages)
        assert reg.manifest(f"retry/{u}", "1").digest == aux["Digest"]
    finally:
        flaky.close()
        bd.docker("rmi", "-f", f"{flaky.host}/retry/{u}:1", f"local-{u}:1", check=False)


# ---------------------------------------------------------------------------
# 2. Pushing again, and to another repository of the same registry
# ---------------------------------------------------------------------------


def test_push_again_and_to_a_sibling_repository(bd, reg, work):
    arc, ref = loaded(bd, work, reg, "again/first", extra=2)
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
    ids = arc.ids_top_first

    status, _, first = push_api(bd, ref.rsplit(":", 1)[0], "1")
    assert status == 200 and stream_error(first) is None, first
    assert {i: s[-1] for i, s in layer_statuses(first, ids).items()} == {i: "Pushed" for i in ids}
    [aux] = aux_of(first)

    # The same tag again: every layer is there already, nothing is sent.
    status, _, again = push_api(bd, ref.rsplit(":", 1)[0], "1")
    assert status == 200 and stream_error(again) is None, again
    assert layer_statuses(again, ids) == {i: ["Preparing", "Layer already exists"] for i in ids}
    assert not [m for m in again if m.get("status") == "Pushing"], again
    assert aux_of(again) == [aux]

    # Another repository of the same registry: the blobs are mounted from
    # the first one (dockerd's cross-repository mount), none is uploaded.
    sibling_repo = f"again/sibling-{uniq()}"
    sibling = f"{reg.host}/{sibling_repo}:1"
    bd.docker("tag", ref, sibling)
    status, _, mounted = push_api(bd, sibling.rsplit(":", 1)[0], "1")
    assert status == 200 and stream_error(mounted) is None, mounted
    assert layer_statuses(mounted, ids) == {i: ["Preparing", f"Mounted from {repo}"] for i in ids}
    assert not [m for m in mounted if m.get("status") == "Pushing"], mounted
    assert aux_of(mounted) == [aux]
    assert reg.manifest(sibling_repo, "1").digest == aux["Digest"]
    assert sorted(repo_digests(bd, ref)) == sorted([f"{reg.host}/{repo}@{aux['Digest']}",
                                                   f"{reg.host}/{sibling_repo}@{aux['Digest']}"])


# ---------------------------------------------------------------------------
# 3. Pulled images are pushed as they were pulled
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["schema2", "oci-zstd"])
def test_pulled_image_is_pushed_with_its_own_blobs(berth_factory, reg, sources, name):
    # A berth of its own: none of the image's layers is there before the
    # pull, so each arrives as the blob the registry serves (a layer berth
    # already holds is not downloaded again, and keeps the blob it came with).
    bd = berth_factory().start()
    src, images = sources
    img = images[name]
    out = bd.docker("pull", img.ref, timeout=300).stdout
    assert f"Digest: {img.digest}" in out, out
    repo = f"repush/{name}-{uniq()}"
    ref = f"{reg.host}/{repo}:1"
    bd.docker("tag", img.ref, ref)
    out = bd.docker("push", ref, timeout=300).stdout
    [(_, (digest, size))] = cli_digests(out).items()
    # Another registry: every layer is sent.
    assert out.count(": Pushed") == len(img.layers), out

    pushed = reg.manifest(repo, "1")
    original = src.manifest(img.repo, img.tag)
    assert pushed.digest == digest and len(pushed.body) == size
    assert sorted(repo_digests(bd, ref)) == sorted([img.repo_digest, f"{reg.host}/{repo}@{digest}"])
    doc = pushed.json
    # The layers go as the blobs berth pulled: not recompressed.
    assert [d["digest"] for d in doc["layers"]] == img.layers
    assert [d["size"] for d in doc["layers"]] == [d["size"] for d in original.json["layers"]]
    assert [d["mediaType"] for d in doc["layers"]] == [d["mediaType"] for d in original.json["layers"]]
    assert doc["config"]["digest"] == img.config_digest
    for d in doc["layers"]:
        reg.blob(repo, d["digest"])  # served, and its sha256 is its digest
    if name == "schema2":
        # dockerd's manifest, byte for byte.
        assert pushed.media_type == DOCKER_MANIFEST
        assert pushed.body == original.body, (pushed.body.decode(), original.body.decode())
        assert digest == img.digest
    else:
        assert pushed.media_type == OCI_MANIFEST
        assert doc["mediaType"] == OCI_MANIFEST
        assert {d["mediaType"] for d in doc["layers"]} == {OCI_LAYER_ZSTD}
        assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
        assert pushed.body == json.dumps(doc, indent=3).encode()


# ---------------------------------------------------------------------------
# 4. The progress stream
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream_pushes(bd, dockerd, reg, work):
    """One 8-layer archive (more layers than 5 uploads at once; none shared
    with another image, so that dockerd mounts nothing) loaded into berth
    and into dockerd, each pushing it through the API to a repository of
    its own twice: {label: (name, raw body, messages, again)}."""
    arc = Archive(work, f"stream-{uniq()}:1", f"stream-{uniq()}", extra=7, base=False)
    out = {"archive": arc}
    for label, daemon in (("berth", bd), ("dockerd", dockerd)):
        arc.load(daemon)
        name = f"{reg.host}/stream/{label}-{uniq()}"
        daemon.docker("tag", arc.ref, f"{name}:1")
        status, body, messages = push_api(daemon, name, "1")
        assert status == 200 and stream_error(messages) is None, (label, messages)
        status, _, again = push_api(daemon, name, "1")
        assert status == 200 and stream_error(again) is None, (label, again)
        out[label] = (name, body, messages, again)
    return out


def test_push_progress_stream_shape(stream_pushes, reg):
    arc = stream_pushes["archive"]
    name, body, messages, _ = stream_pushes["berth"]
    ids = arc.ids_top_first
    # dockerd's stream formatter: one JSON object a line, CRLF.
    assert body.endswith(b"\r\n")
    assert body.count(b"\n") == body.count(b"\r\n") == len(messages)

    assert messages[0] == {"status": f"The push refers to repository [{name}]"}
    # Every layer is "Preparing" first, top layer first.
    assert [(m["status"], m["id"]) for m in messages[1:1 + len(ids)]] == \
        [("Preparing", i) for i in ids]
    manifest = reg.manifest(name.split("/", 1)[1], "1").json
    sizes = {short_id(diff): d["size"] for diff, d in zip(arc.diff_ids, manifest["layers"])}
    for i, seq in layer_statuses(messages, ids).items():
        assert seq in (["Preparing", "Pushing", "Pushed"],
                       ["Preparing", "Waiting", "Pushing", "Pushed"]), (i, seq)
    # Beyond 5 layers at once, the rest wait.
    waiting = [m["id"] for m in messages if m.get("status") == "Waiting"]
    assert len(waiting) == len(ids) - 5, waiting
    for m in messages[1:]:
        if "id" not in m:
            continue
        assert set(m) <= {"status", "progressDetail", "progress", "id"}, m
        if m["status"] == "Pushing":
            detail = m["progressDetail"]
            assert set(detail) == {"current", "total"}, m
            assert 0 < detail["current"] <= detail["total"] == sizes[m["id"]], m
            assert m["progress"].startswith("["), m
        else:
            assert m["progressDetail"] == {} and "progress" not in m, m
    for i in ids:
        pushing = [m["progressDetail"]["current"] for m in messages
                   if m.get("id") == i and m.get("status") == "Pushing"]
        assert pushing == sorted(pushing) and pushing[-1] == sizes[i], (i, pushing)
    # Then the tag's digest line and the aux line, last.
    digest = reg.manifest(name.split("/", 1)[1], "1").digest
    size = len(reg.manifest(name.split("/", 1)[1], "1").body)
    assert messages[-2] == {"status": f"1: digest: {digest} size: {size}"}
    assert messages[-1] == {"progressDetail": {}, "aux": {"Tag": "1", "Digest": digest, "Size": size}}
    assert [m for m in messages if "id" not in m] == [messages[0], messages[-2], messages[-1]]


def test_push_progress_stream_as_dockerd(stream_pushes):
    """The same archive pushed by dockerd: the same lines that are not
    about a layer, the same statuses for each layer (Waiting for the same
    layers: dockerd uploads top first and queues the bottom ones)."""
    ids = stream_pushes["archive"].ids_top_first
    mine, theirs = stream_pushes["berth"], stream_pushes["dockerd"]

    def shape(name, messages):
        text = json.dumps([m for m in messages if "id" not in m]).replace(name, "NAME")
        return re.sub(r"sha256:[0-9a-f]{64}", "DIGEST", re.sub(r'size: \d+|"Size": \d+', "SIZE", text))

    assert shape(mine[0], mine[2]) == shape(theirs[0], theirs[2])
    # The layers past the fifth wait: dockerd uploads from the top down, so
    # the bottom ones wait, in that order.
    for push in (2, 3):
        waiting = [[m["id"] for m in run[push] if m.get("status") == "Waiting"] for run in (mine, theirs)]
        # dockerd's goroutines may report them in another order under load.
        assert sorted(waiting[1]) == sorted(ids[5:]), waiting
        assert waiting[0] == ids[5:], f"berth: {waiting[0]}, dockerd: {waiting[1]} (top first: {ids})"
    # "Preparing" for every layer, top first, as dockerd. berth says them
    # all before anything else; dockerd's goroutines may slip a "Waiting"
    # in between under load, so its "Preparing" lines are compared alone.
    preparing = [("Preparing", i) for i in ids]
    assert [(m["status"], m["id"]) for m in mine[2][1:1 + len(ids)]] == preparing
    assert [(m["status"], m["id"]) for m in theirs[2] if m.get("status") == "Preparing"] == preparing
    # Which keys each status comes with.
    assert keys_by_status(mine[2] + mine[3], ids) == keys_by_status(theirs[2] + theirs[3], ids)
    # The second push: the same lines, layers in any order.
    assert shape(mine[0], mine[3]) == shape(theirs[0], theirs[3])
    assert layer_statuses(mine[3], ids) == layer_statuses(theirs[3], ids)
    # The first: each layer goes through the same statuses.
    assert layer_statuses(mine[2], ids) == layer_statuses(theirs[2], ids)


def keys_by_status(messages: list[dict], ids) -> dict[str, set[frozenset]]:
    out: dict[str, set[frozenset]] = {}
    for m in messages:
        if m.get("id") in ids:
            shape = frozenset(list(m) + [f"progressDetail.{k}" for k in m.get("progressDetail") or {}])
            out.setdefault(m["status"], set()).add(shape)
    return out


def test_max_concurrent_uploads(berth_factory, reg, work):
    one = berth_factory(extra_args=["--max-concurrent-uploads", "1"]).start()
    arc, ref = loaded(one, work, reg, "serial", extra=3, extra_size=600_000)
    ids = arc.ids_top_first
    status, _, messages = push_api(one, ref.rsplit(":", 1)[0], "1")
    assert status == 200 and stream_error(messages) is None, messages
    waiting = [m["id"] for m in messages if m.get("status") == "Waiting"]
    assert len(waiting) == len(set(waiting)) == len(ids) - 1, messages
    # One layer at a time: a layer's upload ends before the next begins.
    order = [m["id"] for m in messages if m.get("status") in ("Pushing", "Pushed")]
    runs = [i for n, i in enumerate(order) if n == 0 or order[n - 1] != i]
    assert sorted(runs) == sorted(ids), order


# ---------------------------------------------------------------------------
# 5. Errors
# ---------------------------------------------------------------------------


def test_push_of_missing_image_or_tag_as_dockerd(bd, dockerd, reg, work):
    arc = Archive(work, f"errs-{uniq()}:1", "errs")
    said = {}
    for label, daemon in (("berth", bd), ("dockerd", dockerd)):
        arc.load(daemon)
        repo = f"{reg.host}/errs/{uniq()}"
        daemon.docker("tag", arc.ref, f"{repo}:1")
        missing = daemon.docker("push", f"{reg.host}/nosuch/{label}:1", check=False)
        wrong = daemon.docker("push", f"{repo}:zz", check=False)
        status, _, api = push_api(daemon, f"{reg.host}/nosuch/{label}", "1")
        said[label] = (missing, wrong, repo, status, api)
    assert not [r for r in reg.catalog() if r.startswith("nosuch/") or r.startswith("errs/")]

    missing, wrong, repo, status, api = said["berth"]
    assert missing.returncode == 1 and wrong.returncode == 1
    assert daemon_error(missing) == f"An image does not exist locally with the tag: {reg.host}/nosuch/berth"
    assert daemon_error(wrong) == f"tag does not exist: {repo}:zz"
    # The errors come inside a 200 stream, after the first line.
    assert status == 200
    assert api == [{"status": f"The push refers to repository [{reg.host}/nosuch/berth]"},
                   {"errorDetail": {"message": daemon_error(missing)}, "error": daemon_error(missing)}]
    dmissing, dwrong, drepo, dstatus, dapi = said["dockerd"]
    assert daemon_error(dmissing) == daemon_error(missing).replace("/berth", "/dockerd")
    assert daemon_error(dwrong).replace(drepo, "REPO") == daemon_error(wrong).replace(repo, "REPO")
    assert json.dumps(dapi).replace("dockerd", "X") == json.dumps(api).replace("berth", "X")


def test_push_to_a_registry_that_is_down(bd, dockerd, work):
    arc = Archive(work, f"down-{uniq()}:1", "down")
    host = f"127.0.0.1:{free_port()}"
    ref = f"{host}/down/app:1"
    said = {}
    for label, daemon in (("berth", bd), ("dockerd", dockerd)):
        arc.load(daemon)
        daemon.docker("tag", arc.ref, ref)
        said[label] = daemon.docker("push", ref, check=False, timeout=120)
    p, dp = said["berth"], said["dockerd"]
    assert p.returncode == 1 and dp.returncode == 1
    assert daemon_error(p).startswith(f'Get "http://{host}/v2/": '), p.stderr
    assert daemon_error(p).endswith("connect: connection refused"), p.stderr
    assert daemon_error(dp).endswith("connect: connection refused"), dp.stderr
    assert repo_digests(bd, ref) == []
    assert repo_digests(dockerd, ref) == []


def test_registry_killed_mid_push_then_push_again(bd, registry_factory, work):  # noqa: F811
    """The registry is frozen (SIGSTOP) once an 8 MB layer's upload is
    under way (more than the socket buffers hold), then killed: the push
    ends with an error in its stream that names the registry (as Go's
    `Put "http://HOST/v2/…": …` does), records no digest, and once the
    registry is back a push succeeds."""
    reg = registry_factory()
    arc, ref = loaded(bd, work, reg, "killed/app", extra=1, extra_size=8 << 20)
    name = ref.rsplit(":", 1)[0]
    repo = name.split("/", 1)[1]
    big = short_id(arc.diff_ids[-1])
    conn = UnixHTTPConnection(bd.sock, timeout=120)
    lines, killer = [], None
    try:
        conn.request("POST", f"/images/{name}/push?tag=1", headers={"X-Registry-Auth": NO_AUTH})
        resp = conn.getresponse()
        assert resp.status == 200
        while True:
            line = resp.readline()
            if not line:
                break
            lines.append(json.loads(line))
            m = lines[-1]
            if m.get("id") == big and m.get("status") == "Pushing" and killer is None:
                os.kill(reg.proc.pid, signal.SIGSTOP)
                killer = threading.Timer(0.5, reg.stop, kwargs={"hard": True})
                killer.start()
    finally:
        conn.close()
        if killer is not None:
            killer.join()
    assert any(m.get("id") == big and m.get("status") == "Pushing" for m in lines), lines
    error = stream_error(lines)
    assert error, lines[-5:]
    assert "aux" not in json.dumps(lines)
    assert not reg.running() and repo_digests(bd, ref) == []
    assert reg.host in error, error

    reg.start()  # the same port, the same storage
    out = bd.docker("push", ref, timeout=300).stdout
    [(_, (digest, _))] = cli_digests(out).items()
    assert reg.manifest(repo, "1").digest == digest
    assert repo_digests(bd, ref) == [f"{name}@{digest}"]
    check_schema2(reg, repo, "1", inspect(bd, ref))


AUTH_WORDS = ("no basic auth credentials", "unauthorized: authentication required")


@pytest.mark.parametrize("bind", ["external", "loopback"])
def test_push_to_tls_registry_needs_login(berth_factory, bd, dockerd, registry_factory, work,  # noqa: F811
                                          bind):
    """htpasswd behind TLS. On the host's own address the registry is not
    insecure: only a berth given the CA (--registry-certs-dir) reaches it.
    On 127.0.0.1 (insecure by default) https is spoken without checks, by
    berth as by dockerd, whose answers are the spec there."""
    user, password = "u" + uniq(), "pw-" + uniq()
    reg = registry_factory(tls=True, auth=(user, password),
                           bind="external" if bind == "external" else "127.0.0.1")
    arc = Archive(work, f"tls-{uniq()}:1", f"tls-{uniq()}")
    if bind == "external":
        trusting = berth_factory()
        trusting.extra_args += ["--registry-certs-dir", reg.certs_dir(os.path.join(trusting.dir, "certs.d"))]
        trusting.start()
        daemons = {"berth": trusting}
        # A berth without the CA refuses the registry's certificate.
        arc.load(bd)
        ref = f"{reg.host}/tls/untrusted-{uniq()}:1"
        bd.docker("tag", arc.ref, ref)
        p = bd.docker("push", ref, check=False, timeout=120)
        assert p.returncode == 1, p.stdout
        assert "certificate" in p.stderr.lower(), p.stderr
        assert repo_digests(bd, ref) == []
    else:
        daemons = {"berth": bd, "dockerd": dockerd}
    creds = base64.urlsafe_b64encode(json.dumps(
        {"username": user, "password": password, "serveraddress": reg.host}).encode()).decode()
    said = {}
    try:
        for label, daemon in daemons.items():
            arc.load(daemon)
            repo = f"tls/{label}-{uniq()}"
            ref = f"{reg.host}/{repo}:1"
            daemon.docker("tag", arc.ref, ref)
            anonymous = daemon.docker("push", ref, check=False, timeout=120)
            look_up = distribution(daemon, ref)
            assert repo_digests(daemon, ref) == []
            assert repo not in reg.catalog()
            right = login(daemon, reg.host, user, password)
            assert right.returncode == 0 and "Login Succeeded" in right.stdout, right.stderr
            out = daemon.docker("push", ref, timeout=300).stdout
            said[label] = (repo, ref, anonymous, look_up, out)

        repo, ref, anonymous, look_up, out = said["berth"]
        daemon = daemons["berth"]
        # Logged in, the push went through.
        [(_, (digest, _))] = cli_digests(out).items()
        assert reg.manifest(repo, "1").digest == digest
        assert repo_digests(daemon, ref) == [f"{reg.host}/{repo}@{digest}"]
        check_schema2(reg, repo, "1", inspect(daemon, ref))
        status, info = distribution(daemon, ref, creds)
        assert status == 200, info
        assert info["Descriptor"]["digest"] == digest
        # Logged out, it was refused in Docker's words.
        assert anonymous.returncode == 1, anonymous.stdout
        assert any(w in daemon_error(anonymous) for w in AUTH_WORDS), anonymous.stderr
        assert look_up[0] != 200 and any(w in look_up[1]["message"] for w in AUTH_WORDS), look_up
        if "dockerd" in said:
            _, _, danonymous, dlook_up, dout = said["dockerd"]
            assert danonymous.returncode == 1 and daemon_error(danonymous) == "no basic auth credentials"
            assert look_up[0] == dlook_up[0], (look_up, dlook_up)
            assert cli_digests(dout), dout
    finally:
        for daemon in daemons.values():
            daemon.docker("logout", reg.host, check=False)


# ---------------------------------------------------------------------------
# 6. --all-tags
# ---------------------------------------------------------------------------


def test_push_all_tags(bd, reg, work):
    u = uniq()
    repo = f"alltags/app-{u}"
    name = f"{reg.host}/{repo}"
    first = Archive(work, f"at1-{u}:1", f"at1-{u}")
    second = Archive(work, f"at2-{u}:1", f"at2-{u}")
    for arc in (first, second):
        arc.load(bd)
    bd.docker("tag", first.ref, f"{name}:a")
    bd.docker("tag", first.ref, f"{name}:b")
    bd.docker("tag", second.ref, f"{name}:c")
    bd.docker("tag", second.ref, f"{reg.host}/alltags/other-{u}:x")  # another repository

    out = bd.docker("push", "--all-tags", name, timeout=300).stdout
    pushed = cli_digests(out)
    assert sorted(pushed) == ["a", "b", "c"], out
    assert sorted(reg.tags(repo)) == ["a", "b", "c"]
    assert f"alltags/other-{u}" not in reg.catalog()
    for tag, (digest, size) in pushed.items():
        m = reg.manifest(repo, tag)
        assert (m.digest, len(m.body)) == (digest, size), tag
    assert pushed["a"] == pushed["b"] != pushed["c"]
    assert repo_digests(bd, f"{name}:a") == [f"{name}@{pushed['a'][0]}"]
    assert repo_digests(bd, f"{name}:c") == [f"{name}@{pushed['c'][0]}"]

    # Through the API: neither a tag query nor a tag in the name pushes
    # every tag of the repository (one aux a tag).
    status, _, messages = push_api(bd, name, None)
    assert status == 200 and stream_error(messages) is None, messages
    assert sorted((a["Tag"], a["Digest"], a["Size"]) for a in aux_of(messages)) == \
        sorted((t, d, s) for t, (d, s) in pushed.items())
    assert not [m for m in messages if m.get("status") == "Pushing"], messages


# ---------------------------------------------------------------------------
# 7. docker-py
# ---------------------------------------------------------------------------


def test_docker_py_push(bd, reg, work, monkeypatch):
    import docker

    arc, ref = loaded(bd, work, reg, "dockerpy/app")
    name = ref.rsplit(":", 1)[0]
    empty = tempfile.mkdtemp(prefix="dockercfg-", dir=work)
    monkeypatch.setenv("DOCKER_CONFIG", empty)  # no credentials of the machine's
    client = docker.DockerClient(base_url=bd.host, version="auto", timeout=300)
    sent = []
    real_post = client.api._post

    def recording_post(url, *args, **kwargs):
        sent.append((url, dict(kwargs.get("headers") or {})))
        return real_post(url, *args, **kwargs)

    monkeypatch.setattr(client.api, "_post", recording_post)
    try:
        items = list(client.images.push(name, tag="1", stream=True, decode=True))
    finally:
        client.close()
    push_calls = [h for url, h in sent if url.endswith("/push")]
    assert len(push_calls) == 1 and not any(k.lower() == "x-registry-auth" for k in push_calls[0]), sent
    assert not [i for i in items if i.get("error") or i.get("errorDetail")], items
    m = reg.manifest(name.split("/", 1)[1], "1")
    assert items[-1] == {"progressDetail": {}, "aux": {"Tag": "1", "Digest": m.digest, "Size": len(m.body)}}
    assert repo_digests(bd, ref) == [f"{name}@{m.digest}"]
    # The CLI's push of the same tag ends the same way.
    status, _, again = push_api(bd, name, "1")
    assert again[-1] == items[-1]


# ---------------------------------------------------------------------------
# 8. GET /distribution/{name}/json
# ---------------------------------------------------------------------------


def test_distribution_of_a_pushed_tag_as_dockerd(bd, dockerd, reg, work):
    arc, ref = loaded(bd, work, reg, "dist/app")
    out = bd.docker("push", ref, timeout=300).stdout
    [(_, (digest, size))] = cli_digests(out).items()
    status, info = distribution(bd, ref)
    assert status == 200, info
    assert info == {"Descriptor": {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": size},
                    "Platforms": [{"architecture": HOST_ARCH, "os": "linux"}]}
    assert distribution(dockerd, ref) == (200, info)
    # By digest, too.
    by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
    assert distribution(bd, by_digest) == (200, info)
    assert distribution(dockerd, by_digest) == (200, info)


@pytest.mark.parametrize("name", ["schema2", "oci-zstd", "multi"])
def test_distribution_of_registry_images_as_dockerd(bd, dockerd, sources, name):
    src, images = sources
    img = images[name]
    status, info = distribution(bd, img.ref)
    assert status == 200, info
    top = src.manifest(img.repo, img.tag)
    assert info["Descriptor"] == {"mediaType": top.media_type, "digest": top.digest, "size": len(top.body)}
    if name == "multi":
        assert top.media_type == OCI_INDEX
        assert info["Platforms"] == [{"architecture": "amd64", "os": "linux"},
                                     {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    else:
        assert info["Platforms"] == [{"architecture": HOST_ARCH, "os": "linux"}]
    status, theirs = distribution(dockerd, img.ref)
    assert status == 200, theirs
    assert theirs["Descriptor"] == info["Descriptor"]
    if name == "oci-zstd" and theirs["Platforms"] is None:
        # dockerd 20.10 reads the platform of a schema 2 manifest's config
        # only (moby 23 reads OCI ones too, as berth does).
        return
    assert theirs == info


@pytest.mark.parametrize("what", ["tag", "repository"])
def test_distribution_of_unknown_reference_as_dockerd(bd, dockerd, reg, work, what):
    if what == "tag":
        arc, ref = loaded(bd, work, reg, "dist/known")
        bd.docker("push", ref, timeout=300)
        ref = f"{ref.rsplit(':', 1)[0]}:nope-{uniq()}"
    else:
        ref = f"{reg.host}/dist/no-such-{uniq()}:1"
    status, info = distribution(bd, ref)
    assert status == 404, (status, info)
    assert "manifest unknown" in info["message"], info
    assert distribution(dockerd, ref) == (status, info)
