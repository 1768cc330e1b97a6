"""Issue 15, the outside tester's leftovers: bind recursion and propagation,
`null` fields, `?platform=`, `--cpuset-*` and field types, each against a
real dockerd 20.10 (API 1.41) in the same run where that dockerd knows the
behaviour, and against berth alone where it is newer than 20.10 (recursive
read-only binds, API 1.44).

A host folder `src` with a tmpfs mounted on `src/sub` is the bind source:
whether the container can write into `/d/sub`, or sees the tmpfs at all,
says how the bind was made.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from busybox_image import import_busybox, remove_all_containers

OLD_API = "1.41"  # what dockerd 20.10 speaks
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"


@pytest.fixture
def source():
    """`src/` with a tmpfs on `src/sub` (holding `marker`); unmounted after."""
    top = tempfile.mkdtemp(prefix="bindsrc-", dir="/tmp")
    sub = os.path.join(top, "sub")
    os.makedirs(sub)
    # A private mount of its own, whatever the host's root is (shared on
    # systemd machines), so "not a shared mount" holds everywhere.
    subprocess.run(["mount", "--bind", top, top], check=True)
    subprocess.run(["mount", "--make-private", top], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "bindtest", sub], check=True)
    with open(os.path.join(sub, "marker"), "w") as f:
        f.write("on the tmpfs\n")
    try:
        yield top
    finally:
        # Deepest first; `top` is mounted once here and again by the
        # propagation test.
        for path in (os.path.join(top, "late"), sub, top, top, top):
            subprocess.run(["umount", "-l", path], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", top], check=False)


@pytest.fixture
def engines(berth, dockerd):
    images = {id(d): import_busybox(d, "bindopts:v1") for d in (berth, dockerd)}
    berth.image, dockerd.image = images[id(berth)], images[id(dockerd)]
    try:
        yield berth, dockerd
    finally:
        remove_all_containers(berth)
        dockerd.docker("container", "prune", "-f", api_version=OLD_API, check=False)


def shell(d, api, *flags_and_script):
    """`docker run --rm FLAGS image sh -c SCRIPT`: (exit code, stdout when
    it succeeded, else stdout + stderr)."""
    *flags, script = flags_and_script
    p = d.docker("run", "--rm", *flags, d.image, "sh", "-c", script, api_version=api, check=False)
    return p.returncode, (p.stdout if p.returncode == 0 else p.stdout + p.stderr)


WRITE_SUB = "touch /d/sub/new && echo wrote"
SEE_SUB = "cat /d/sub/marker 2>/dev/null || echo no-submount"


def test_legacy_read_only_binds_and_non_recursive_binds_match_dockerd(engines, source):
    for d in engines:
        # API 1.41: `:ro` is read-only at its top only, the tmpfs under it
        # stays writable (Docker's old behaviour, kept for old clients).
        rc, text = shell(d, OLD_API, "-v", f"{source}:/d:ro", WRITE_SUB)
        assert (rc, text.strip()) == (0, "wrote"), (d, text)
        rc, text = shell(d, OLD_API, "-v", f"{source}:/d:ro", "touch /d/top")
        assert rc != 0 and "Read-only file system" in text, (d, text)
        # bind-recursive=disabled (NonRecursive): the sub-mount is not there.
        mount = f"type=bind,src={source},dst=/d,bind-nonrecursive"
        rc, text = shell(d, OLD_API, "--mount", mount, SEE_SUB)
        assert (rc, text.strip()) == (0, "no-submount"), (d, text)
        rc, text = shell(d, OLD_API, "-v", f"{source}:/d", SEE_SUB)
        assert text.strip() == "on the tmpfs", (d, text)


def test_read_only_binds_are_recursive_at_api_1_44(berth, source):
    d = berth
    d.image = import_busybox(d, "bindopts:v1")
    rc, text = shell(d, None, "-v", f"{source}:/d:ro", WRITE_SUB)
    assert rc != 0 and "Read-only file system" in text, text
    readonly = f"type=bind,src={source},dst=/d,readonly"
    rc, text = shell(d, None, "--mount", readonly, WRITE_SUB)
    assert rc != 0 and "Read-only file system" in text, text
    rc, text = shell(d, None, "--mount", readonly + ",bind-recursive=writable", WRITE_SUB)
    assert (rc, text.strip()) == (0, "wrote"), text
    rc, text = shell(d, None, "--mount", readonly + ",bind-recursive=readonly,bind-propagation=rprivate",
                     WRITE_SUB)
    assert rc != 0 and "Read-only file system" in text, text
    rc, text = shell(d, None, "--mount", f"type=bind,src={source},dst=/d,bind-recursive=disabled",
                     SEE_SUB)
    assert text.strip() == "no-submount", text
    rc, text = shell(d, None, "-v", f"{source}:/d:rro", WRITE_SUB)
    assert rc != 0 and "Read-only file system" in text, text
    code, body = d.api("POST", "/v1.43/containers/create", {
        "Image": d.image, "Cmd": ["true"], "HostConfig": {"Mounts": [{
            "Type": "bind", "Source": source, "Target": "/d", "ReadOnly": True,
            "BindOptions": {"ReadOnlyForceRecursive": True}}]}})
    assert code == 400 and "needs API v1.44 or newer" in body["message"], body
    # The API checks what the CLI checks.
    code, body = d.api("POST", "/containers/create", {
        "Image": d.image, "Cmd": ["true"], "HostConfig": {"Mounts": [{
            "Type": "bind", "Source": source, "Target": "/d",
            "BindOptions": {"ReadOnlyNonRecursive": True}}]}})
    assert code == 400 and "ReadOnly" in body["message"], body


def test_propagation_is_applied_and_needs_a_fitting_source(engines, source):
    for d in engines:
        mount = f"type=bind,src={source},dst=/d,bind-propagation=rshared"
        rc, text = shell(d, OLD_API, "--mount", mount, "true")
        assert rc != 0 and "is not a shared mount" in text, (d, text)
    # A shared source: an rslave bind sees what the host mounts later, an
    # rprivate one does not.
    d = engines[0]
    subprocess.run(["mount", "--bind", source, source], check=True)
    subprocess.run(["mount", "--make-shared", source], check=True)
    late = os.path.join(source, "late")
    os.makedirs(late)
    script = "while [ ! -e /d/go ]; do sleep 0.05; done; grep -c ' /d/late ' /proc/self/mountinfo"
    seen = {}
    for mode in ("rslave", "rprivate"):
        cid = d.docker("run", "-d", "--mount", f"type=bind,src={source},dst=/d,bind-propagation={mode}",
                       d.image, "sh", "-c", script).stdout.strip()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "late", late], check=True)
        open(os.path.join(source, "go"), "w").close()
        d.docker("wait", cid)
        seen[mode] = d.docker("logs", cid).stdout.strip()
        d.docker("rm", cid)
        os.unlink(os.path.join(source, "go"))
        subprocess.run(["umount", late], check=True)
    assert seen == {"rslave": "1", "rprivate": "0"}, seen


def create(d, body, query=""):
    return d.api("POST", f"/v{OLD_API}/containers/create{query}", body)


def test_nulls_types_platform_and_cpusets_match_dockerd(engines):
    cpus = os.cpu_count() or 1
    for d in engines:
        base = {"Image": d.image, "Cmd": ["true"]}
        # null is "unset", as Go decodes it.
        code, body = create(d, {**base, "WorkingDir": None, "User": None,
                                "HostConfig": {"Memory": None, "PidMode": None, "Binds": None}})
        assert code == 201, (d, body)
        # Wrong JSON types are refused (dockerd 20.10 says 500; later
        # versions, and berth, 400).
        for host in ({"Init": "yes"}, {"Isolation": 5}):
            code, body = create(d, {**base, "HostConfig": host})
            assert code in ((400,) if d is engines[0] else (400, 500)), (d, host, body)
        # The image's platform, checked when one is asked for.
        code, body = create(d, base, f"?platform=linux/{HOST_ARCH}")
        assert code == 201, (d, body)
        code, body = create(d, base, f"?platform=linux/{OTHER_ARCH}")
        assert code == 404, (d, body)
        assert ("was found but does not match the specified platform: wanted "
                f"linux/{OTHER_ARCH}, actual: linux/{HOST_ARCH}") in body["message"], (d, body)
        # CPUs and memory nodes the host lacks: refused at create.
        code, body = create(d, {**base, "HostConfig": {"CpusetCpus": str(cpus + 5)}})
        assert code == 400, (d, body)
        assert body["message"].startswith(
            f"Requested CPUs are not available - requested {cpus + 5}, available: "), (d, body)
        code, body = create(d, {**base, "HostConfig": {"CpusetMems": "7"}})
        assert code == 400 and "Requested memory nodes are not available" in body["message"], \
            (d, body)
        code, body = create(d, {**base, "HostConfig": {"CpusetCpus": "0-"}})
        assert code == 400, (d, body)
    code, body = engines[0].api("POST", "/containers/create", "null",
                                {"Content-Type": "application/json"})
    assert code == 400 and body["message"] == "config cannot be empty in order to create a container"
    code, body = create(engines[0], {"Image": engines[0].image}, "?platform=no/such/thing/here")
    assert code == 400 and "cannot parse platform specifier" in body["message"], body
    assert json.dumps(body)  # a JSON answer


def test_nested_binds_in_any_order(berth, tmp_path):
    """`-v app:/x -v data:/x/y` in either order (and deeper): parents are
    mounted first, as Docker sorts them; the propagation step then finds
    every destination a mount point (it failed before the sort)."""
    d = berth
    d.image = import_busybox(d, "nested:v1")
    for sub in "abc":
        (tmp_path / sub).mkdir()
    a, b, c = (str(tmp_path / s) for s in "abc")
    for binds in (["-v", f"{a}:/x", "-v", f"{b}:/x/y"], ["-v", f"{b}:/x/y", "-v", f"{a}:/x"],
                  ["-v", f"{c}:/x/y/z", "-v", f"{a}:/x", "-v", f"{b}:/x/y"]):
        rc, text = shell(d, None, *binds, "grep -o ' /x[^ ]*' /proc/self/mountinfo | sort")
        assert rc == 0, text
        assert text.split()[:2] == ["/x", "/x/y"], text
