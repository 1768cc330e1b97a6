"""`docker pull` and `docker login` against real registries (Debian's
docker-registry, registry_helpers.py) holding images made here
(registry_images.py): a Docker schema 2 image pushed by a private dockerd,
OCI images pushed by skopeo with gzip and with zstd layers, a
multi-platform OCI index; TLS with a CA of our own and htpasswd logins;
faults (a registry killed mid-download, corrupted, missing and hostile
blobs, no registry at all, unknown tags). Where Docker's behaviour is the
spec, the same pull runs on a private dockerd (20.10) in the same run and
its answers are compared with berth's.

One populated registry and one berth serve the module; each test removes
the images it pulled (on both daemons) and its registries, proxies and
daemons.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid

import pytest

from busybox_image import berth_with_cleanup
from registry_helpers import (  # noqa: F401  (fixtures)
    HOST_ARCH,
    OCI_MANIFEST,
    free_port,
    image_store_files,
    layer_statuses,
    populated_registry,
    pull_api,
    registry_factory,
    registry_factory_module,
    short_id,
    stream_error,
)
from registry_images import big_image, escape_tar, push_oci, tar_files

LAYER_STEPS = ["Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete",
               "Extracting", "Pull complete"]


def uniq() -> str:
    return uuid.uuid4().hex[:10]


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bd():
    """The module's berth (its containers are removed at the end). Two
    attempts per layer download: a broken transfer is retried once, after
    dockerd's 5-second count-down, so a registry that stays dead fails a
    pull within seconds."""
    yield from berth_with_cleanup(["--max-download-attempts", "2"])


@pytest.fixture(scope="module")
def reg(populated_registry):  # noqa: F811
    return populated_registry[0]


@pytest.fixture(scope="module")
def images(populated_registry):  # noqa: F811
    return populated_registry[1]


def image_refs(daemon) -> dict[str, set[str]]:
    """{image ID: its tags and repo digests}."""
    status, body = daemon.api("GET", "/images/json?all=1")
    assert status == 200, body
    none = {"<none>:<none>", "<none>@<none>"}
    return {i["Id"]: (set(i.get("RepoTags") or []) | set(i.get("RepoDigests") or [])) - none
            for i in body}


def drop_new_images(daemon, before: dict[str, set[str]]) -> None:
    """Removes the images made since ``before``, and the references added
    to images that were there; not the base image registry_images keeps on
    dockerd for its builds (``dockerd._registry_base``)."""
    kept = getattr(daemon, "_registry_base", None)
    for _ in range(3):
        now = image_refs(daemon)
        extra = [(i, refs - before.get(i, set())) for i, refs in now.items() if kept not in refs]
        if not any(i not in before or refs for i, refs in extra):
            return
        for image_id, refs in extra:
            if image_id not in before:
                daemon.api("DELETE", f"/images/{image_id}?force=1")
            else:
                for ref in refs:
                    daemon.api("DELETE", f"/images/{ref}")


@pytest.fixture
def tidy(bd, dockerd):
    """Whatever a test pulls (on berth or on dockerd) is removed after it."""
    before = {"bd": image_refs(bd), "dk": image_refs(dockerd)}
    yield
    drop_new_images(bd, before["bd"])
    drop_new_images(dockerd, before["dk"])


def inspect(daemon, ref: str):
    status, body = daemon.api("GET", f"/images/{ref}/json")
    return status, body


def absent(daemon, ref: str) -> None:
    status, body = inspect(daemon, ref)
    assert status == 404, f"{ref} is on the daemon: {body}"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def blob_ext(media_type: str) -> str:
    return "zstd" if "zstd" in media_type else "gzip" if "gzip" in media_type else "tar"


def daemon_error(proc) -> str:
    """The daemon's message as the CLI prints it."""
    text = proc.stderr.strip()
    return text.removeprefix("Error response from daemon: ")


# ---------------------------------------------------------------------------
# 1. Each kind of image: pull, run, inspect
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["schema2", "oci-gzip", "oci-zstd", "multi"])
def test_pull_runs_and_inspects_like_dockerd(bd, dockerd, reg, images, tidy, name):
    img = images[name]
    absent(bd, img.ref)
    out = bd.docker("pull", img.ref, timeout=300).stdout
    assert f"Digest: {img.digest}" in out, out
    assert f"Status: Downloaded newer image for {img.ref}" in out, out

    run = bd.docker("run", "--rm", img.ref, "cat", "/marker")
    assert run.stdout == f"{img.marker}\n"
    if name == "multi":
        assert img.marker == f"multi-{HOST_ARCH}"

    status, info = inspect(bd, img.ref)
    assert status == 200, info
    assert info["Id"] == img.config_digest
    assert info["RootFS"]["Layers"] == img.diff_ids
    # For an index, dockerd records the index's digest, not the platform
    # manifest's.
    assert info["RepoDigests"] == [img.repo_digest]
    assert img.repo_digest.endswith("@" + reg.manifest(img.repo, img.tag).digest)
    assert info["RepoTags"] == [img.ref]
    assert (info["Os"], info["Architecture"]) == ("linux", HOST_ARCH)

    # Each layer's blob is kept, as downloaded, beside the layer.
    manifest = reg.platform_manifest(img.repo, img.tag)
    for diff_id, desc in zip(img.diff_ids, manifest.json["layers"]):
        layer_dir = os.path.join(bd.root, "images", "layers", diff_id.split(":")[1])
        assert os.path.isdir(layer_dir), layer_dir
        blob = os.path.join(bd.root, "images", "blobs", diff_id.split(":")[1],
                            f"{desc['digest'].split(':')[1]}.{blob_ext(desc['mediaType'])}")
        assert os.path.isfile(blob), (blob, os.listdir(os.path.dirname(blob)))
        assert os.path.getsize(blob) == desc["size"]
        assert sha256_file(blob) == desc["digest"]

    # dockerd's pull of the same reference is the spec (Debian's dockerd
    # 20.10 predates zstd layers: it fails with "invalid tar header").
    if name == "oci-zstd":
        return
    dockerd.docker("pull", img.ref, timeout=300)
    status, dinfo = inspect(dockerd, img.ref)
    assert status == 200, dinfo
    for key in ("Id", "RepoDigests", "Os", "Architecture"):
        assert info[key] == dinfo[key], key
    assert info["RootFS"]["Layers"] == dinfo["RootFS"]["Layers"]


# ---------------------------------------------------------------------------
# 2. By digest
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["oci-gzip", "multi"])
def test_pull_and_run_by_digest(bd, dockerd, images, tidy, name):
    img = images[name]
    ref = img.by_digest
    absent(bd, ref)
    out = bd.docker("pull", ref, timeout=300).stdout
    assert f"Status: Downloaded newer image for {ref}" in out, out
    run = bd.docker("run", "--rm", ref, "cat", "/marker")
    assert run.stdout == f"{img.marker}\n"
    status, info = inspect(bd, ref)
    assert status == 200, info
    assert info["Id"] == img.config_digest
    assert info["RepoTags"] == []
    assert info["RepoDigests"] == [ref]

    dout = dockerd.docker("pull", ref, timeout=300).stdout
    # The CLI's lines (progress bars are not printed without a terminal):
    # the same header, digest and status lines; each layer's in order.
    ids = [short_id(d) for d in img.layers]
    other, layers = cli_pull_lines(out, ids)
    dother, dlayers = cli_pull_lines(dout, ids)
    assert other == dother, (out, dout)
    assert other[0] == f"{ref}: Pulling from {img.repo}", out
    for seq in layers.values():
        assert seq == [s for s in LAYER_STEPS if s not in ("Downloading", "Extracting")], out
    assert_layer_steps_like_dockerd(layers, dlayers)
    status, dinfo = inspect(dockerd, ref)
    assert (dinfo["Id"], dinfo["RepoTags"], dinfo["RepoDigests"]) == \
        (info["Id"], info["RepoTags"], info["RepoDigests"])


# ---------------------------------------------------------------------------
# 3. The progress stream
# ---------------------------------------------------------------------------


def split_stream(messages: list[dict], layer_ids: set[str]):
    """(the messages that are not about a layer, those that are)."""
    other = [m for m in messages if m.get("id") not in layer_ids]
    layers = [m for m in messages if m.get("id") in layer_ids]
    return other, layers


def is_subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def assert_layer_steps_like_dockerd(mine: dict[str, list[str]], theirs: dict[str, list[str]]):
    """Each layer's statuses against dockerd's. dockerd hands a watcher
    only a transfer's latest state, so it may skip intermediate ones
    (Downloading, Verifying Checksum of a small layer): its sequence must
    be part of berth's, with the same first and last status."""
    assert mine.keys() == theirs.keys()
    for layer_id, seq in mine.items():
        other = theirs[layer_id]
        assert is_subsequence(other, seq) and other[:1] == seq[:1] and other[-1:] == seq[-1:], \
            (layer_id, seq, other)


def cli_pull_lines(out: str, layer_ids) -> tuple[list[str], dict[str, list[str]]]:
    """The CLI's pull output: (the lines not about a layer, each layer's
    statuses)."""
    other, layers = [], {i: [] for i in layer_ids}
    for line in out.splitlines():
        head, _, status = line.partition(": ")
        if head in layers:
            layers[head].append(status)
        else:
            other.append(line)
    return other, layers


def keys_by_status(messages: list[dict]) -> dict[str, set[frozenset]]:
    """Which keys (and progressDetail keys) each status comes with."""
    out: dict[str, set[frozenset]] = {}
    for m in messages:
        shape = frozenset(list(m) + [f"progressDetail.{k}" for k in m.get("progressDetail") or {}])
        out.setdefault(m.get("status"), set()).add(shape)
    return out


def test_progress_stream_as_dockerd_sends_it(bd, dockerd, reg, images, tidy):
    a, b = images["oci-gzip"], images["oci-gzip-b"]
    assert a.layers[0] == b.layers[0] and a.layers[1] != b.layers[1], "fixture images changed"
    ids = {short_id(d) for d in a.layers + b.layers}
    sizes = {short_id(d["digest"]): d["size"]
             for img in (a, b) for d in reg.manifest(img.repo, img.tag).json["layers"]}
    runs = {}
    for label, daemon in (("berth", bd), ("dockerd", dockerd)):
        absent(daemon, a.ref)
        absent(daemon, b.ref)
        got = []
        for ref in (a.ref, b.ref, a.ref):
            status, messages = pull_api(daemon, ref)
            assert status == 200, (label, messages)
            assert stream_error(messages) is None, (label, messages)
            got.append(messages)
        cli = daemon.docker("pull", a.ref).stdout
        runs[label] = (got, cli)

    (first, second, again), cli = runs["berth"]
    # A first pull: the header, each layer from "Pulling fs layer" to "Pull
    # complete", the digest and the status line.
    other, layers = split_stream(first, ids)
    assert other == [{"status": "Pulling from oci/gzip", "id": a.tag},
                     {"status": f"Digest: {a.digest}"},
                     {"status": f"Status: Downloaded newer image for {a.ref}"}], first
    steps = layer_statuses(first, [short_id(d) for d in a.layers])
    for layer_id, seq in steps.items():
        assert seq == LAYER_STEPS, (layer_id, seq)
    for m in layers:
        assert "progressDetail" in m, m
        if m["status"] == "Downloading":
            assert m["progressDetail"]["total"] == sizes[m["id"]], m
            assert 0 < m["progressDetail"]["current"] <= m["progressDetail"]["total"], m
            assert m["progress"].startswith("["), m
    # Every layer is announced before any is downloaded.
    statuses = [m["status"] for m in layers]
    assert max(i for i, s in enumerate(statuses) if s == "Pulling fs layer") < \
        statuses.index("Downloading"), statuses

    # The second image shares the base layer: "Already exists" for it.
    steps = layer_statuses(second, [short_id(d) for d in b.layers])
    assert steps[short_id(b.layers[0])] == ["Already exists"], steps
    assert steps[short_id(b.layers[1])] == LAYER_STEPS, steps
    base = [m for m in second if m.get("id") == short_id(b.layers[0])]
    assert base == [{"status": "Already exists", "progressDetail": {}, "id": short_id(b.layers[0])}]
    assert second[-1] == {"status": f"Status: Downloaded newer image for {b.ref}"}

    # Pulled again: no layers, "Image is up to date".
    assert again == [{"status": "Pulling from oci/gzip", "id": a.tag},
                     {"status": f"Digest: {a.digest}"},
                     {"status": f"Status: Image is up to date for {a.ref}"}], again
    assert f"Status: Image is up to date for {a.ref}" in cli, cli

    # And what dockerd sends for the same three pulls.
    (dfirst, dsecond, dagain), dcli = runs["dockerd"]
    for mine, theirs in ((first, dfirst), (second, dsecond), (again, dagain)):
        assert split_stream(mine, ids)[0] == split_stream(theirs, ids)[0]
        assert_layer_steps_like_dockerd(layer_statuses(mine, ids), layer_statuses(theirs, ids))
        # The same keys with each status (progressDetail's too).
        shapes, dshapes = keys_by_status(mine), keys_by_status(theirs)
        assert set(dshapes) <= set(shapes), (shapes, dshapes)
        for status, shape in dshapes.items():
            assert shapes[status] == shape, status
    assert cli == dcli


# ---------------------------------------------------------------------------
# 4. Logins: htpasswd on plain HTTP (berth and dockerd side by side), then
#    TLS with htpasswd on the host's own address
# ---------------------------------------------------------------------------


def login(daemon, host: str, user: str, password: str):
    return daemon.docker("login", host, "-u", user, "--password-stdin", input=password + "\n",
                         check=False)


def stored_logins(daemon) -> dict:
    """The CLI's saved logins (``auths`` of DOCKER_CONFIG/config.json)."""
    try:
        with open(os.path.join(daemon.docker_config, "config.json")) as f:
            return json.load(f).get("auths") or {}
    except FileNotFoundError:
        return {}


def test_login_and_pull_with_htpasswd_as_dockerd(bd, dockerd, registry_factory, tidy):  # noqa: F811
    user, password = "u" + uniq(), "pw-" + uniq()
    reg = registry_factory(auth=(user, password))
    img = push_oci(reg, "locked/app", "1", "locked-" + uniq())
    said = {}
    for label, daemon in (("berth", bd), ("dockerd", dockerd)):
        anonymous = daemon.docker("pull", img.ref, check=False, timeout=120)
        wrong = login(daemon, reg.host, user, password + "x")
        right = login(daemon, reg.host, user, password)
        try:
            pulled = daemon.docker("pull", img.ref, check=False, timeout=300)
        finally:
            daemon.docker("logout", reg.host, check=False)
        said[label] = (anonymous, wrong, right, pulled)

    anonymous, wrong, right, pulled = said["berth"]
    danon, dwrong, dright, dpulled = said["dockerd"]
    # Refused without credentials.
    assert anonymous.returncode != 0 and danon.returncode != 0
    # A wrong password is refused, a right one accepted.
    assert wrong.returncode != 0
    assert daemon_error(wrong) == daemon_error(dwrong)
    assert daemon_error(wrong) == f"login attempt to http://{reg.host}/v2/ failed with status: 401 Unauthorized"
    assert right.returncode == 0, right.stderr
    assert "Login Succeeded" in right.stdout
    # Logged in, the pull works.
    assert pulled.returncode == 0, pulled.stderr
    assert dpulled.returncode == 0, dpulled.stderr
    run = bd.docker("run", "--rm", img.ref, "cat", "/marker")
    assert run.stdout == f"{img.marker}\n"
    assert inspect(bd, img.ref)[1]["RepoDigests"] == [img.repo_digest]
    # The anonymous pull's refusal in dockerd's words ("no basic auth
    # credentials", naming the manifest request).
    assert daemon_error(anonymous) == daemon_error(danon), (anonymous.stderr, danon.stderr)


def test_tls_registry_with_login(berth_factory, bd, registry_factory, tidy):  # noqa: F811
    user, password = "u" + uniq(), "pw-" + uniq()
    # On the host's own address: not 127.0.0.0/8, so https only, and the
    # certificate is checked.
    reg = registry_factory(tls=True, auth=(user, password), bind="external")
    img = push_oci(reg, "tls/app", "1", "tls-" + uniq())
    trusting = berth_factory()
    certs = reg.certs_dir(os.path.join(trusting.dir, "certs.d"))
    trusting.extra_args += ["--registry-certs-dir", certs]
    trusting.start()
    try:
        # A berth without the CA refuses the registry's certificate, for a
        # login as for a pull.
        untrusted = login(bd, reg.host, user, password)
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
        untrusted = bd.docker("pull", img.ref, check=False)
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
        absent(bd, img.ref)

        # With it: no credentials, no pull.
        anonymous = trusting.docker("pull", img.ref, check=False)
        assert anonymous.returncode != 0
        text = daemon_error(anonymous)
        assert any(w in text for w in ("no basic auth credentials", "unauthorized",
                                       "authentication required")), text
        absent(trusting, img.ref)
        wrong = login(trusting, reg.host, user, "not-" + password)
        assert wrong.returncode != 0
        assert daemon_error(wrong) == \
            f"login attempt to https://{reg.host}/v2/ failed with status: 401 Unauthorized"
        assert reg.host not in stored_logins(trusting)
        right = login(trusting, reg.host, user, password)
        assert right.returncode == 0, right.stderr
        assert "Login Succeeded" in right.stdout
        assert reg.host in stored_logins(trusting)
        trusting.docker("pull", img.ref, timeout=300)
        run = trusting.docker("run", "--rm", img.ref, "cat", "/marker")
        assert run.stdout == f"{img.marker}\n"
        status, info = inspect(trusting, img.ref)
        assert info["RepoDigests"] == [img.repo_digest]
        assert info["RootFS"]["Layers"] == img.diff_ids
    finally:
        trusting.docker("logout", reg.host, check=False)


# ---------------------------------------------------------------------------
# 5. Faults: a clear error, and nothing left behind
# ---------------------------------------------------------------------------


def assert_nothing_left(daemon, ref: str, before: dict) -> None:
    absent(daemon, ref)
    after = image_store_files(daemon)
    assert after == before, {k: (sorted(set(before[k]) - set(after[k])),
                                 sorted(set(after[k]) - set(before[k]))) for k in before}


def test_registry_killed_mid_pull_then_pull_again(bd, dockerd, registry_factory, tidy):  # noqa: F811
    reg = registry_factory()
    big = big_image(dockerd, reg, f"big/d{uniq()}", "1", layers=2, layer_mb=16)
    proxy = registry_factory.proxy(reg.host, rate=1 << 20)
    ref = f"{proxy.host}/{big.repo}:{big.tag}"
    before = image_store_files(bd)
    result = {}

    def pull():
        result["pull"] = pull_api(bd, ref, timeout=300)

    thread = threading.Thread(target=pull, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    scratch = []
    while time.monotonic() < deadline and thread.is_alive():
        scratch = [f for f in image_store_files(bd)["tmp"] if os.path.basename(f).startswith("blob")]
        if proxy.relayed > (3 << 20) and scratch:
            break
        time.sleep(0.05)
    # Killed while the layers are downloading (into the scratch folder).
    assert thread.is_alive() and scratch, (proxy.relayed, scratch, result)
    reg.stop(hard=True)
    # The daemon answers while the pull fails and counts down.
    assert bd.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert bd.docker("images", "-q").returncode == 0
    thread.join(120)
    assert not thread.is_alive(), "the pull did not end after the registry died"
    status, messages = result["pull"]
    assert status == 200, messages
    error = stream_error(messages)
    assert error, messages[-5:]
    assert any(d in error for d in big.layers) or "EOF" in error or "connection" in error, error
    assert any(m.get("status") == "Downloading" for m in messages)
    assert_nothing_left(bd, ref, before)

    reg.start()
    proxy.target = (reg.bind, reg.port)
    proxy.rate = 256 << 20
    out = bd.docker("pull", ref, timeout=300).stdout
    assert f"Status: Downloaded newer image for {ref}" in out
    assert bd.docker("run", "--rm", ref, "cat", "/marker").stdout == "big\n"
    status, info = inspect(bd, ref)
    assert info["RootFS"]["Layers"] == big.diff_ids
    assert image_store_files(bd)["tmp"] == []


def test_broken_download_resumes_where_it_stopped(bd, dockerd, registry_factory, tidy):  # noqa: F811
    """The registry dies mid-pull and is back within the retry count-down:
    the pull goes on with the bytes it has (a Range request), as dockerd's
    retries do, and succeeds."""
    reg = registry_factory()
    big = big_image(dockerd, reg, f"big/r{uniq()}", "1", layers=2, layer_mb=16)
    sizes = sum(len(reg.blob(big.repo, d)) for d in big.layers)
    proxy = registry_factory.proxy(reg.host, rate=1 << 20)
    ref = f"{proxy.host}/{big.repo}:{big.tag}"
    result = {}
    thread = threading.Thread(target=lambda: result.update(pull=pull_api(bd, ref, timeout=300)),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proxy.relayed < (4 << 20):
        time.sleep(0.05)
    assert thread.is_alive(), result
    reg.stop(hard=True)
    reg.start()
    proxy.target = (reg.bind, reg.port)
    proxy.rate = 256 << 20
    thread.join(120)
    assert not thread.is_alive(), "the pull did not end"
    status, messages = result["pull"]
    assert status == 200 and not stream_error(messages), messages[-5:]
    assert any(m.get("status") == "Retrying in 5 seconds" and "progressDetail" in m
               for m in messages), [m.get("status") for m in messages]
    assert messages[-1]["status"] == f"Status: Downloaded newer image for {ref}"
    # Resumed, not started again: little more than the blobs crossed.
    assert proxy.relayed < sizes + (1 << 20), (proxy.relayed, sizes)
    assert bd.docker("run", "--rm", ref, "cat", "/marker").stdout == "big\n"
    status, info = inspect(bd, ref)
    assert info["RootFS"]["Layers"] == big.diff_ids
    assert image_store_files(bd)["tmp"] == []


@pytest.mark.parametrize("bad", ["absolute", "climbing"])
def test_hostile_diff_ids_never_name_host_paths(bd, reg, tidy, bad):
    """A config whose diff IDs are paths, with a layer that then fails
    its check: the pull is refused before any of them names a file, and
    the folder named is untouched (a failed pull deletes the layers it
    unpacked, by diff ID)."""
    u = uniq()
    victim = tempfile.mkdtemp(prefix=f"victim-{u}-", dir="/tmp")
    with open(os.path.join(victim, "keep"), "w") as f:
        f.write("keep")
    try:
        diff_id = victim if bad == "absolute" else "sha256:../../../../../.." + victim
        repo = f"hostile/{bad}-{u}"
        layer = gzip.compress(tar_files([(f"f-{u}", b"x")]))
        layer_digest = reg.put_blob(repo, layer)
        config = json.dumps({"architecture": HOST_ARCH, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
        config_digest = reg.put_blob(repo, config)
        reg.put_manifest(repo, "1", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer_digest, "size": len(layer)}],
        }, OCI_MANIFEST)
        before = image_store_files(bd)
        p = bd.docker("pull", f"{reg.host}/{repo}:1", check=False)
        assert p.returncode != 0 and "invalid digest" in p.stderr, p.stderr
        assert os.path.exists(os.path.join(victim, "keep"))
        assert image_store_files(bd) == before
    finally:
        shutil.rmtree(victim, ignore_errors=True)


def test_pull_all_tags_as_dockerd(bd, dockerd, reg, tidy):
    """`docker pull --all-tags`: every tag of the repository, and the
    Status line names the repository, as dockerd's."""
    u = uniq()
    repo = f"alltags/app-{u}"
    for tag in ("1", "2", "v3"):
        push_oci(reg, repo, tag, f"all-{tag}-{u}")
    name = f"{reg.host}/{repo}"
    outs = {}
    for d in (bd, dockerd):
        outs[d] = d.docker("pull", "--all-tags", name, timeout=300).stdout
        tags = sorted(t for i in d.api("GET", "/images/json")[1] for t in (i["RepoTags"] or [])
                      if t.startswith(name + ":"))
        assert tags == [f"{name}:1", f"{name}:2", f"{name}:v3"], tags
        assert f"Status: Downloaded newer image for {name}\n" in outs[d], outs[d]
    assert bd.docker("run", "--rm", f"{name}:v3", "cat", "/marker").stdout == f"all-v3-{u}\n"


def test_pull_of_another_platform_is_refused(bd, reg, images, tidy):
    """`--platform` names a platform a single-platform image is not of:
    refused (dockerd's words), nothing recorded."""
    img = images["oci-gzip"]
    other = "linux/arm64" if HOST_ARCH != "arm64" else "linux/amd64"
    before = image_store_files(bd)
    p = bd.docker("pull", "--platform", other, img.ref, check=False)
    assert p.returncode != 0, p.stdout
    assert "does not match the specified platform" in p.stderr, p.stderr
    assert image_store_files(bd) == before


def test_docker_hub_names_come_from_a_mirror(berth_factory, reg):
    """`--registry-mirror http://…`: a Docker Hub name (`name:tag`, i.e.
    docker.io/library/name) is pulled from the mirror, recorded under the
    Hub name, and runs. (The image exists on the mirror only.)"""
    u = uniq()
    img = push_oci(reg, f"library/mirrored-{u}", "1", f"mirror-{u}")
    ref = f"mirrored-{u}:1"
    with_mirror = berth_factory(extra_args=["--registry-mirror", f"http://{reg.host}"]).start()
    out = with_mirror.docker("pull", ref, timeout=300).stdout
    assert f"Status: Downloaded newer image for {ref}" in out, out
    status, info = inspect(with_mirror, ref)
    assert info["RepoDigests"] == [f"mirrored-{u}@{img.digest}"], info["RepoDigests"]
    assert with_mirror.docker("run", "--rm", ref, "cat", "/marker").stdout == f"mirror-{u}\n"


def test_concurrent_pulls_share_each_download(bd, dockerd, registry_factory, tidy):  # noqa: F811
    """Three pulls of one image at once download each layer once (the
    others wait for it, as in dockerd), and all three succeed."""
    reg = registry_factory()
    big = big_image(dockerd, reg, f"big/s{uniq()}", "1", layers=2, layer_mb=8)
    kept = image_store_blob_digests(bd)
    fresh = [d for d in big.layers if d not in kept]
    sizes = sum(len(reg.blob(big.repo, d)) for d in fresh)
    proxy = registry_factory.proxy(reg.host, rate=4 << 20)
    ref = f"{proxy.host}/{big.repo}:{big.tag}"
    results = []
    threads = [threading.Thread(target=lambda: results.append(pull_api(bd, ref, timeout=300)),
                                daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(results) == 3, results
    for status, messages in results:
        assert status == 200 and not stream_error(messages), messages[-3:]
    assert proxy.relayed < sizes * 1.3 + (1 << 20), (proxy.relayed, sizes)
    assert bd.docker("run", "--rm", ref, "cat", "/marker").stdout == "big\n"
    assert image_store_files(bd)["tmp"] == []


def image_store_blob_digests(daemon) -> set[str]:
    """sha256:… of every blob berth keeps."""
    return {"sha256:" + os.path.basename(f).split(".")[0]
            for f in image_store_files(daemon)["blobs"] if "." in os.path.basename(f)}


def faulty_image(reg, kind: str):
    """An image of the populated registry's busybox base, /marker and a
    layer no other image has (the one a fault test breaks)."""
    u = uniq()
    if kind == "escape":
        name = f"evil-{u}"
        layer = escape_tar(name)
    else:
        name = f"data-{u}"
        layer = tar_files([(name, os.urandom(256 << 10))])
    img = push_oci(reg, f"fault/{kind}-{u}", "1", f"fault-{u}", extra_layers=[layer])
    return img, name


@pytest.mark.parametrize("kind", ["corrupt", "missing", "escape"])
def test_broken_blob_fails_cleanly(bd, dockerd, reg, tidy, kind):
    img, name = faulty_image(reg, kind)
    bad = img.layers[-1]
    if kind == "corrupt":
        reg.corrupt_blob(bad)
    elif kind == "missing":
        reg.delete_blob_file(bad)
    before = image_store_files(bd)
    p = bd.docker("pull", img.ref, check=False, timeout=300)
    assert p.returncode != 0, p.stdout
    text = daemon_error(p)
    if kind != "escape":
        # dockerd refuses these blobs too (it does not retry them).
        dp = dockerd.docker("pull", img.ref, check=False, timeout=300)
        assert dp.returncode != 0, dp.stdout
    if kind == "corrupt":
        # dockerd's words, which berth's download() means to use too.
        assert text == daemon_error(dp) == f"filesystem layer verification failed for digest {bad}", text
    elif kind == "missing":
        # dockerd says "unknown blob"; berth the registry's words.
        assert bad in text or "blob unknown" in text, (text, daemon_error(dp))
    else:
        # dockerd unpacks layers in a chroot, where ../NAME is clamped to
        # the layer's root and accepted; berth refuses the layer.
        assert text.startswith("refusing archive: ") and f"../{name}" in text, text
        # Nothing of it landed anywhere: not in berth's folder (its root and
        # the scratch folders in it), not in /tmp (where ../../../…/tmp/NAME
        # would land).
        assert not os.path.lexists(f"/tmp/{name}")
        for dirpath, dirnames, filenames in os.walk(bd.dir):
            assert name not in filenames + dirnames, os.path.join(dirpath, name)
    assert_nothing_left(bd, img.ref, before)


def test_registry_down_is_connection_refused(bd, dockerd, tidy):
    ref = f"127.0.0.1:{free_port()}/down/app:1"
    before = image_store_files(bd)
    p = bd.docker("pull", ref, check=False)
    dp = dockerd.docker("pull", ref, check=False)
    assert p.returncode != 0 and dp.returncode != 0
    host = ref.split("/")[0]
    assert daemon_error(p).startswith(f'Get "http://{host}/v2/": '), p.stderr
    assert daemon_error(p).endswith("connect: connection refused"), p.stderr
    assert daemon_error(dp).endswith("connect: connection refused"), dp.stderr
    assert_nothing_left(bd, ref, before)


@pytest.mark.parametrize("what", ["tag", "repository"])
def test_unknown_manifest_as_dockerd_says(bd, dockerd, images, tidy, what):
    img = images["oci-gzip"]
    ref = f"{img.host}/{img.repo}:nope-{uniq()}" if what == "tag" else \
        f"{img.host}/no/such-{uniq()}:1"
    before = image_store_files(bd)
    p = bd.docker("pull", ref, check=False)
    dp = dockerd.docker("pull", ref, check=False)
    assert p.returncode != 0 and dp.returncode != 0
    if what == "tag":
        assert daemon_error(p) == f"manifest for {ref} not found: manifest unknown: manifest unknown"
    assert daemon_error(p) == daemon_error(dp)
    assert_nothing_left(bd, ref, before)


# ---------------------------------------------------------------------------
# 6. tag and rmi of pulled images, step by step as dockerd does them
# ---------------------------------------------------------------------------


def rmi_lines(daemon, ref: str) -> list[str]:
    return daemon.docker("rmi", ref).stdout.splitlines()


def refs_of(daemon, image_id: str):
    status, info = inspect(daemon, image_id)
    return (sorted(info["RepoTags"]), sorted(info["RepoDigests"])) if status == 200 else None


def test_tag_and_rmi_of_pulled_images_as_dockerd(bd, dockerd, images, tidy):
    img = images["oci-gzip"]
    digest_ref = img.repo_digest
    alias = f"alias-{uniq()}/x:t"
    seen = {}
    for label, daemon in (("berth", bd), ("dockerd", dockerd)):
        absent(daemon, img.ref)
        steps = []
        # A tag of another repository; rmi of the pulled tag takes the
        # repository's digest reference with it (no tag of it is left).
        daemon.docker("pull", img.ref, timeout=300)
        daemon.docker("tag", img.ref, alias)
        steps.append(refs_of(daemon, img.config_digest))
        steps.append(rmi_lines(daemon, img.ref))
        steps.append(refs_of(daemon, img.config_digest))
        steps.append([line for line in rmi_lines(daemon, alias) if not line.startswith("Deleted:")])
        steps.append(refs_of(daemon, img.config_digest))
        # rmi by digest reference untags only that while a tag is left.
        daemon.docker("pull", img.ref, timeout=300)
        steps.append(rmi_lines(daemon, digest_ref))
        steps.append(refs_of(daemon, img.config_digest))
        deleted = rmi_lines(daemon, img.ref)
        steps.append([line for line in deleted if not line.startswith("Deleted:")])
        assert f"Deleted: {img.config_digest}" in deleted, deleted
        # Pulled by digest only: rmi of the digest reference deletes it.
        daemon.docker("pull", img.by_digest, timeout=300)
        deleted = rmi_lines(daemon, img.by_digest)
        steps.append([line for line in deleted if not line.startswith("Deleted:")])
        assert f"Deleted: {img.config_digest}" in deleted, deleted
        steps.append(refs_of(daemon, img.config_digest))
        seen[label] = steps

    mine, theirs = seen["berth"], seen["dockerd"]
    assert mine == theirs, "\n".join(f"step {i}: berth {m!r}, dockerd {t!r}"
                                     for i, (m, t) in enumerate(zip(mine, theirs)) if m != t)
    assert mine[0] == (sorted([img.ref, alias]), [digest_ref]), mine[0]
    assert mine[1] == [f"Untagged: {img.ref}", f"Untagged: {digest_ref}"], mine
    assert mine[2] == ([alias], []), mine
    assert mine[5] == [f"Untagged: {digest_ref}"], mine
    assert mine[6] == ([img.ref], []), mine
    assert mine[8] == [f"Untagged: {digest_ref}"], mine
    assert mine[9] is None


# ---------------------------------------------------------------------------
# 7. docker run pulls an image it does not have
# ---------------------------------------------------------------------------


def test_run_pulls_a_missing_image(bd, images, tidy):
    img = images["oci-zstd"]
    absent(bd, img.ref)
    run = bd.docker("run", "--rm", img.ref, "cat", "/marker", timeout=300)
    assert run.stdout == f"{img.marker}\n"
    assert f"Unable to find image '{img.ref}' locally" in run.stderr, run.stderr
    assert f"Status: Downloaded newer image for {img.ref}" in run.stderr, run.stderr
    status, info = inspect(bd, img.ref)
    assert info["RepoDigests"] == [img.repo_digest]
