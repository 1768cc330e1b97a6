"""Must-show 2: a multi-layer image made by Docker runs on berth.

On a private dockerd (20.10, `--bridge=none`, so its containers run with
`--network none`) a busybox root file system is imported as the base; two
`docker run` + `docker commit` rounds add files and delete files (whiteouts
in the upper layers, also a whole directory replaced). The image is saved
with `docker save`, loaded into berth with `docker load`, and run on berth.

No registry and no builder are used. Tests that only need berth's image
store (tag, rmi) use a busybox image imported into berth and do not need
dockerd.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import uuid

import pytest

from busybox_image import berth_with_cleanup, import_busybox, make_rootfs, temp_folder, write_files

# The same check script runs on dockerd and on berth; its output must match.
CHECK_SCRIPT = r"""
for p in /etc/base-keep /etc/base-gone /added1 /added2 /l2dir/f /opq/old1 /opq/old2 \
         /opq/new /base-dir-gone /base-dir-gone/x /bin/vi /bin/ls; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "present $p"; else echo "absent $p"; fi
done
echo "opq: $(ls -A /opq | tr '\n' ' ')"
echo "keep: $(cat /etc/base-keep)"
echo "added2: $(cat /added2)"
echo "l2: $(cat /l2dir/f)"
echo "wh: $(find / -xdev -name '.wh.*' 2>/dev/null | tr '\n' ' ')"
echo "env: $LAYER"
"""

EXPECTED_CHECK = """\
present /etc/base-keep
absent /etc/base-gone
absent /added1
present /added2
present /l2dir/f
absent /opq/old1
absent /opq/old2
present /opq/new
absent /base-dir-gone
absent /base-dir-gone/x
absent /bin/vi
present /bin/ls
opq: new 
keep: kept
added2: two
l2: 2
wh: 
env: three
"""


@pytest.fixture(scope="module")
def berth_d():
    yield from berth_with_cleanup()


@pytest.fixture(scope="module")
def workdir():
    yield from temp_folder("berth-img-")


def _rel(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def layer_whiteouts(tar_path: str) -> list[list[str]]:
    """For each layer of a `docker save` archive (manifest order): the
    whiteout entries (basename starting with .wh.) it holds."""
    with tarfile.open(tar_path) as t:
        [manifest] = json.load(t.extractfile("manifest.json"))
        out = []
        for layer in manifest["Layers"]:
            lt = tarfile.open(fileobj=t.extractfile(layer))
            out.append(sorted(_rel(m.name) for m in lt.getmembers()
                              if os.path.basename(m.name).startswith(".wh.")))
        return out


@pytest.fixture(scope="module")
def built(dockerd, workdir):
    """Builds the 3-layer image on dockerd and saves it. Returns a dict."""
    tag = f"mlayer-{uuid.uuid4().hex[:8]}:v3"
    base = f"mbase-{uuid.uuid4().hex[:8]}:v1"
    # Base layer: busybox plus files that upper layers delete.
    root = os.path.join(workdir, "rootfs")
    make_rootfs(root)
    write_files(root, [("etc/base-keep", "kept\n"), ("etc/base-gone", "gone\n"),
                       ("opq/old1", "o1\n"), ("opq/old2", "o2\n"), ("base-dir-gone/x", "x\n")])
    base_tar = os.path.join(workdir, "base.tar")
    subprocess.run(["tar", "-C", root, "-cf", base_tar, "."], check=True)
    dockerd.docker("import", base_tar, base)

    # Layer 2: add files, delete a base file.
    c1 = "mk1-" + uuid.uuid4().hex[:8]
    dockerd.docker("run", "--network", "none", "--name", c1, base, "sh", "-c",
                   "echo one > /added1; rm /etc/base-gone; mkdir /l2dir; echo 2 > /l2dir/f")
    step = f"mstep-{uuid.uuid4().hex[:8]}:v2"
    dockerd.docker("commit", c1, step)
    # Layer 3: delete a file of layer 2 and base files, replace a directory.
    c2 = "mk2-" + uuid.uuid4().hex[:8]
    dockerd.docker("run", "--network", "none", "--name", c2, step, "sh", "-c",
                   "echo two > /added2; rm /added1; rm /bin/vi; rm -rf /base-dir-gone; "
                   "rm -rf /opq; mkdir /opq; echo new > /opq/new")
    dockerd.docker("commit", "-c", "ENV LAYER=three", "-c", 'CMD ["cat", "/added2"]', c2, tag)
    dockerd.docker("rm", c1, c2)

    [info] = json.loads(dockerd.docker("image", "inspect", tag).stdout)
    saved = os.path.join(workdir, "saved.tar")
    dockerd.docker("save", "-o", saved, tag)
    check = dockerd.docker("run", "--rm", "--network", "none", tag, "sh", "-c",
                           CHECK_SCRIPT).stdout
    return {"tag": tag, "id": info["Id"], "layers": info["RootFS"]["Layers"],
            "tar": saved, "docker_check": check}


@pytest.fixture(scope="module")
def loaded(built, berth_d):
    p = berth_d.docker("load", "-i", built["tar"])
    return built, p


# --------------------------------------------------------------------------
# dockerd -> save -> berth load -> run
# --------------------------------------------------------------------------


def test_saved_image_really_has_whiteouts(built):
    assert len(built["layers"]) >= 3
    wh = layer_whiteouts(built["tar"])
    assert len(wh) == len(built["layers"])
    assert wh[0] == []
    assert "etc/.wh.base-gone" in wh[1]
    assert ".wh.added1" in wh[2]
    assert ".wh.base-dir-gone" in wh[2]
    assert "bin/.wh.vi" in wh[2]
    # /opq was removed and made again: an opaque dir or explicit whiteouts.
    assert ("opq/.wh..wh..opq" in wh[2]
            or {"opq/.wh.old1", "opq/.wh.old2"} <= set(wh[2])), wh[2]
    # Docker itself: the reference result.
    assert built["docker_check"] == EXPECTED_CHECK


def test_load_into_berth(loaded):
    built, p = loaded
    assert p.returncode == 0
    assert f"Loaded image: {built['tag']}" in p.stdout


def test_loaded_image_keeps_id_and_layers(loaded, berth_d):
    built, _ = loaded
    [info] = json.loads(berth_d.docker("image", "inspect", built["tag"]).stdout)
    assert info["Id"] == built["id"]
    assert info["RootFS"]["Layers"] == built["layers"]
    assert built["tag"] in info["RepoTags"]
    assert "LAYER=three" in info["Config"]["Env"]
    assert info["Config"]["Cmd"] == ["cat", "/added2"]


def test_run_loaded_image_on_berth(loaded, berth_d):
    built, _ = loaded
    name = "ml-" + uuid.uuid4().hex[:8]
    try:
        p = berth_d.docker("run", "--rm", "--name", name, built["tag"], "sh", "-c", CHECK_SCRIPT)
        assert p.stdout == EXPECTED_CHECK
        assert p.stdout == built["docker_check"]
        # The image's CMD.
        p = berth_d.docker("run", "--rm", "--name", name, built["tag"])
        assert p.stdout == "two\n"
    finally:
        berth_d.api("DELETE", f"/containers/{name}?force=1")


def test_images_lists_loaded_tag(loaded, berth_d):
    built, _ = loaded
    repo, tag = built["tag"].split(":")
    out = berth_d.docker("images", "--no-trunc", "--format",
                         "{{.Repository}} {{.Tag}} {{.ID}}").stdout
    assert f"{repo} {tag} {built['id']}" in out.splitlines()
    status, body = berth_d.api("GET", "/images/json")
    assert status == 200
    [item] = [i for i in body if i["Id"] == built["id"]]
    assert item["RepoTags"] == [built["tag"]]


def test_load_same_archive_twice_is_idempotent(loaded, berth_d):
    built, _ = loaded
    p = berth_d.docker("load", "-i", built["tar"])
    assert f"Loaded image: {built['tag']}" in p.stdout
    ids = berth_d.docker("images", "-q", "--no-trunc").stdout.split()
    assert ids.count(built["id"]) == 1


# --------------------------------------------------------------------------
# tag / rmi on berth (no dockerd needed)
# --------------------------------------------------------------------------


@pytest.fixture
def bb(berth_d):
    """A fresh busybox image on berth, unique tag; removed afterwards."""
    ref = import_busybox(berth_d, f"rmitest-{uuid.uuid4().hex[:8]}:v1")
    made: list[str] = []
    try:
        yield ref, made
    finally:
        for c in made:
            berth_d.api("DELETE", f"/containers/{c}?force=1")
        iid = image_id(berth_d, ref)
        if iid:
            berth_d.api("DELETE", f"/images/{iid}?force=1")


def image_id(d, ref):
    p = d.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return p.stdout.strip() if p.returncode == 0 else None


def test_tag_then_rmi_one_tag_only_untags(berth_d, bb):
    ref, _ = bb
    iid = image_id(berth_d, ref)
    alias = f"alias-{uuid.uuid4().hex[:8]}:x"
    p = berth_d.docker("tag", ref, alias)
    assert p.stdout == ""
    assert image_id(berth_d, alias) == iid
    out = berth_d.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert f"{ref} {iid}" in out.splitlines()
    assert f"{alias} {iid}" in out.splitlines()

    p = berth_d.docker("rmi", alias)
    assert p.stdout == f"Untagged: {alias}\n"
    assert image_id(berth_d, alias) is None
    assert image_id(berth_d, ref) == iid
    [info] = json.loads(berth_d.docker("image", "inspect", ref).stdout)
    assert info["RepoTags"] == [ref]

    # Same through the API: only an Untagged record.
    berth_d.docker("tag", ref, alias)
    status, body = berth_d.api("DELETE", f"/images/{alias}")
    assert status == 200, body
    assert body == [{"Untagged": alias}]
    assert image_id(berth_d, ref) == iid


def test_rmi_last_tag_deletes(berth_d, bb):
    ref, _ = bb
    iid = image_id(berth_d, ref)
    p = berth_d.docker("rmi", ref)
    lines = p.stdout.splitlines()
    assert lines[0] == f"Untagged: {ref}"
    assert f"Deleted: {iid}" in lines
    assert image_id(berth_d, iid) is None
    assert iid not in berth_d.docker("images", "-q", "--no-trunc").stdout.split()


def test_rmi_used_by_stopped_container_conflict(berth_d, bb):
    ref, made = bb
    iid = image_id(berth_d, ref)
    name = "user-" + uuid.uuid4().hex[:8]
    made.append(name)
    berth_d.docker("create", "--name", name, ref, "true")
    cid = json.loads(berth_d.docker("inspect", name).stdout)[0]["Id"]

    p = berth_d.docker("rmi", ref, check=False)
    assert p.returncode != 0
    expected = (f'conflict: unable to remove repository reference "{ref}" (must force) - '
                f"container {cid[:12]} is using its referenced image {iid[7:19]}")
    assert expected in p.stderr
    assert image_id(berth_d, ref) == iid

    status, headers, body = berth_d.http("DELETE", f"/images/{ref}")
    assert status == 409
    assert json.loads(body)["message"] == expected
    assert image_id(berth_d, ref) == iid

    # Once the container is gone the image can go.
    berth_d.docker("rm", name)
    berth_d.docker("rmi", ref)
    assert image_id(berth_d, iid) is None


def test_rmi_used_by_running_container_conflict(berth_d, bb):
    ref, made = bb
    iid = image_id(berth_d, ref)
    name = "runner-" + uuid.uuid4().hex[:8]
    made.append(name)
    berth_d.docker("run", "-d", "--name", name, ref, "sleep", "300")
    cid = json.loads(berth_d.docker("inspect", name).stdout)[0]["Id"]

    status, headers, body = berth_d.http("DELETE", f"/images/{ref}")
    assert status == 409, body
    assert "conflict" in json.loads(body)["message"]
    assert image_id(berth_d, ref) == iid

    p = berth_d.docker("rmi", ref, check=False)
    assert p.returncode != 0
    assert (f'conflict: unable to remove repository reference "{ref}" (must force) - '
            f"container {cid[:12]} is using its referenced image {iid[7:19]}") in p.stderr
    p = berth_d.docker("run", "--rm", ref, "echo", "still-there")
    assert p.stdout == "still-there\n"


# Reference (private dockerd 20.10, same in moby v28): DELETE /images/<id>
#   stopped container, no force -> 409 "conflict: unable to delete <12> (must be forced)
#                                   - image is being used by stopped container <12>"
#   stopped container, force=1  -> 200 [{"Untagged":..},{"Deleted":..}]
#   running container, with or without force -> 409 "conflict: unable to delete <12>
#                                   (cannot be forced) - image is being used by running container <12>"


def test_rmi_by_id_conflict_messages_match_docker(berth_d, bb):
    ref, made = bb
    iid = image_id(berth_d, ref)
    stopped, running = ("st-" + uuid.uuid4().hex[:8]), ("rn-" + uuid.uuid4().hex[:8])
    made += [stopped, running]
    berth_d.docker("create", "--name", stopped, ref, "true")
    sid = json.loads(berth_d.docker("inspect", stopped).stdout)[0]["Id"]
    status, _, body = berth_d.http("DELETE", f"/images/{iid}")
    assert (status, json.loads(body)["message"]) == (409, (
        f"conflict: unable to delete {iid[7:19]} (must be forced) - image is being used by "
        f"stopped container {sid[:12]}"))
    berth_d.docker("rm", stopped)

    berth_d.docker("run", "-d", "--name", running, ref, "sleep", "300")
    rid = json.loads(berth_d.docker("inspect", running).stdout)[0]["Id"]
    for q in ("", "?force=1"):
        status, _, body = berth_d.http("DELETE", f"/images/{iid}{q}")
        assert (status, json.loads(body)["message"]) == (409, (
            f"conflict: unable to delete {iid[7:19]} (cannot be forced) - image is being used "
            f"by running container {rid[:12]}"))
    assert image_id(berth_d, ref) == iid


def test_rmi_force_by_id_with_stopped_container(berth_d, bb):
    ref, made = bb
    iid = image_id(berth_d, ref)
    name = "st-" + uuid.uuid4().hex[:8]
    made.append(name)
    berth_d.docker("create", "--name", name, ref, "true")
    # Deliberate difference (ARCHITECTURE.md): Docker untags and deletes
    # (200); berth never deletes the layers an existing container's root
    # filesystem is built on, so even force is refused, and nothing changes.
    status, _, body = berth_d.http("DELETE", f"/images/{iid}?force=1")
    assert status == 409, body
    assert json.loads(body)["message"].startswith(
        f"conflict: unable to delete {iid[7:19]} (cannot be forced) - image is being used by stopped container")
    assert image_id(berth_d, ref) == iid


def test_tag_unknown_image_404(berth_d):
    status, headers, body = berth_d.http("POST", "/images/nosuch-img:1/tag?repo=x&tag=y")
    assert status == 404
    p = berth_d.docker("tag", "nosuch-img:1", "x:y", check=False)
    assert p.returncode != 0
    assert "No such image: nosuch-img:1" in p.stderr
