"""Images for the registry tests, made without the internet and pushed
into a test Registry (registry_helpers.py):

- through a private dockerd (20.10): `docker import` of the busybox rootfs,
  then `DOCKER_BUILDKIT=0 docker build --network none` FROM it with
  COPY/RUN steps (a Docker schema 2 image of 3 layers), `docker push`;
- through `skopeo copy` of an OCI image layout written here (oci-layout,
  index.json, blobs/sha256/...): gzip layers, zstd layers (the zstd CLI),
  a multi-platform index (linux/amd64 + linux/arm64/v8), a layer whose tar
  has `../` entries (skopeo copies blobs as they are, `--preserve-digests`).

Every image holds the host's static busybox (/bin/busybox, /bin/sh and the
other applets as symlinks) and /marker with the variant's name, so a test
can `docker run IMAGE cat /marker` and tell which image (or platform) ran.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid

from busybox_image import import_busybox, make_rootfs
from registry_helpers import HOST_ARCH, SKOPEO_BIN, PushedImage, Registry, sha256_digest

MTIME = 1700000000
CREATED = "2024-01-02T03:04:05Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
               "none": "application/vnd.oci.image.layer.v1.tar"}


# ---------------------------------------------------------------------------
# Layer tars (deterministic: root owned, one mtime, sorted)
# ---------------------------------------------------------------------------


def _clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = MTIME
    return ti


def tar_dir(path: str) -> bytes:
    """The tree under ``path`` as an uncompressed tar (entries relative)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(path)):
            tar.add(os.path.join(path, name), arcname=name, filter=_clean)
    return buf.getvalue()


def tar_files(entries) -> bytes:
    """A tar of ``(name, data)`` entries, written as given (no name
    checks: ``../x`` stays ``../x``); ``data`` None makes a folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            ti = _clean(tarfile.TarInfo(name))
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


_BASE: dict[str, bytes] = {}


def busybox_tar() -> bytes:
    """The busybox rootfs of busybox_image.py as a layer tar (made once)."""
    if "tar" not in _BASE:
        work = tempfile.mkdtemp(prefix="ocibase-", dir="/tmp")
        try:
            _BASE["tar"] = tar_dir(make_rootfs(work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _BASE["tar"]


def marker_tar(marker: str) -> bytes:
    return tar_files([("marker", f"{marker}\n".encode())])


def escape_tar(name: str) -> bytes:
    """A layer trying to write outside its root: ``../NAME``, a deeper
    ``../../NAME`` and one that would land in /tmp/NAME."""
    return tar_files([("ok-before", b"fine\n"), (f"../{name}", b"escaped\n"),
                      (f"../../{name}", b"escaped\n"),
                      ("../" * 12 + f"tmp/{name}", b"escaped\n"), ("ok-after", b"fine\n")])


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True,
                              check=True).stdout
    assert compression == "none", compression
    return data


# ---------------------------------------------------------------------------
# An OCI image layout
# ---------------------------------------------------------------------------


class OciLayout:
    """An OCI image layout under ``path``: blobs are written as they are
    added; ``tag`` names a descriptor in index.json."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.entries: list[dict] = []
        self.save()

    def blob(self, data: bytes, media_type: str) -> dict:
        digest = sha256_digest(data)
        with open(os.path.join(self.path, "blobs", "sha256", digest.split(":")[1]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def json_blob(self, obj: dict, media_type: str) -> dict:
        return self.blob(json.dumps(obj, separators=(",", ":")).encode(), media_type)

    def image(self, layer_tars: list[bytes], compression: str = "gzip", arch: str = "amd64",
              variant: str | None = None, history: list[str] | None = None) -> dict:
        """Writes the layers, the config and the manifest; returns the
        manifest's descriptor (with its platform)."""
        layers, diff_ids = [], []
        for tar in layer_tars:
            layers.append(self.blob(compress(tar, compression), LAYER_TYPES[compression]))
            diff_ids.append(sha256_digest(tar))
        history = history or [f"berth test layer {i}" for i in range(len(layer_tars))]
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        config = {**platform, "created": CREATED, "author": "berth tests",
                  "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "history": [{"created": CREATED, "created_by": h} for h in history]}
        cfg = self.json_blob(config, "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cfg, "layers": layers}
        desc = self.json_blob(manifest, manifest["mediaType"])
        return {**desc, "platform": platform}

    def index(self, manifests: list[dict]) -> dict:
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": manifests}
        return self.json_blob(index, index["mediaType"])

    def tag(self, desc: dict, name: str) -> None:
        entry = {k: v for k, v in desc.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.entries.append(entry)
        self.save()

    def save(self) -> None:
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.entries}, f)


def skopeo_push(registry: Registry, layout: str, name: str, repo: str, tag: str) -> None:
    """`skopeo copy --all --preserve-digests oci:LAYOUT:NAME docker://HOST/REPO:TAG`
    (TLS checked against the registry's CA; its user's credentials)."""
    work = tempfile.mkdtemp(prefix="skopeo-", dir="/tmp")
    try:
        argv = [SKOPEO_BIN, "--insecure-policy", "copy", "--all", "--preserve-digests",
                "--retry-times", "2"]
        if registry.tls:
            argv += ["--dest-cert-dir", registry.ca.trust_dir]
        else:
            argv += ["--dest-tls-verify=false"]
        if registry.auth:
            argv += ["--dest-creds", f"{registry.auth[0]}:{registry.auth[1]}"]
        argv += [f"oci:{layout}:{name}", f"docker://{registry.host}/{repo}:{tag}"]
        # No credentials of the machine's: an auth file of our own.
        env = {**os.environ, "REGISTRY_AUTH_FILE": os.path.join(work, "auth.json"), "HOME": work}
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        if p.returncode != 0:
            raise AssertionError(f"skopeo failed ({p.returncode}): {' '.join(argv)}\n{p.stdout}\n{p.stderr}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def push_oci(registry: Registry, repo: str, tag: str, marker: str, compression: str = "gzip",
             platforms=None, extra_layers=()) -> PushedImage:
    """Pushes a busybox image with /marker (``marker``) and ``extra_layers``
    (tars) on top. With ``platforms`` [(arch, variant), ...], an index of
    one image per platform whose /marker is ``<marker>-<arch>``."""
    work = tempfile.mkdtemp(prefix="oci-", dir="/tmp")
    try:
        oci = OciLayout(os.path.join(work, "layout"))
        host_marker = marker
        if platforms:
            descs = []
            for arch, variant in platforms:
                m = f"{marker}-{arch}"
                host_marker = m if arch == HOST_ARCH else host_marker
                descs.append(oci.image([busybox_tar(), marker_tar(m), *extra_layers], compression,
                                       arch=arch, variant=variant))
            top = oci.index(descs)
        else:
            top = oci.image([busybox_tar(), marker_tar(marker), *extra_layers], compression,
                            arch=HOST_ARCH)
        oci.tag(top, "t")
        skopeo_push(registry, oci.path, "t", repo, tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pushed = registry.describe(repo, tag)
    pushed.marker = host_marker
    return pushed


# ---------------------------------------------------------------------------
# Through a private dockerd
# ---------------------------------------------------------------------------


def dockerd_base(dockerd) -> str:
    """The busybox image imported once into ``dockerd`` for builds."""
    if not getattr(dockerd, "_registry_base", None):
        dockerd._registry_base = import_busybox(dockerd, f"regbase-{uuid.uuid4().hex[:8]}:1")
    return dockerd._registry_base


def dockerd_build(dockerd, steps: list[str], files: dict[str, bytes] | None = None,
                  tag: str | None = None) -> str:
    """`DOCKER_BUILDKIT=0 docker build --network none` of ``FROM base`` plus
    ``steps`` with ``files`` in the context (no internet needed)."""
    tag = tag or f"regbuild-{uuid.uuid4().hex[:8]}:1"
    ctx = tempfile.mkdtemp(prefix="ctx-", dir="/tmp")
    try:
        for name, data in (files or {}).items():
            with open(os.path.join(ctx, name), "wb") as f:
                f.write(data)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("\n".join([f"FROM {dockerd_base(dockerd)}", *steps]) + "\n")
        dockerd.docker("build", "--network", "none", "-q", "-t", tag, ctx,
                       env={"DOCKER_BUILDKIT": "0"}, timeout=600)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return tag


def dockerd_push(dockerd, registry: Registry, local: str, repo: str, tag: str,
                 marker: str = "", keep: bool = True) -> PushedImage:
    """`docker tag` + `docker push` from ``dockerd`` (a plain-HTTP registry
    on 127.0.0.0/8: dockerd treats it as insecure by default). Without
    ``keep`` the image is removed from dockerd afterwards."""
    ref = f"{registry.host}/{repo}:{tag}"
    dockerd.docker("tag", local, ref)
    dockerd.docker("push", ref, timeout=600)
    dockerd.docker("rmi", ref, *([] if keep else [local]))
    pushed = registry.describe(repo, tag)
    pushed.marker = marker
    return pushed


def push_schema2(dockerd, registry: Registry, repo: str, tag: str, marker: str,
                 keep: bool = True) -> PushedImage:
    """A Docker schema 2 image of 3 layers (base, COPY /marker, RUN) from
    dockerd's build."""
    local = dockerd_build(dockerd, ["COPY marker /marker", f"RUN echo {marker} > /built.txt",
                                    "ENV FOO=bar", 'CMD ["sh"]'], {"marker": f"{marker}\n".encode()})
    return dockerd_push(dockerd, registry, local, repo, tag, marker, keep)


def big_image(dockerd, registry: Registry, repo: str = "big/data", tag: str = "1",
              layers: int = 4, layer_mb: int = 26) -> PushedImage:
    """A ≥100 MB image (by default) of ``layers`` layers of random bytes
    (incompressible) over the busybox base, pushed by dockerd and removed
    from it."""
    files = {f"r{i}.bin": os.urandom(layer_mb << 20) for i in range(layers)}
    steps = [f"COPY r{i}.bin /data/r{i}.bin" for i in range(layers)]
    local = dockerd_build(dockerd, steps + ["RUN echo big > /marker"], files)
    files.clear()
    return dockerd_push(dockerd, registry, local, repo, tag, "big", keep=False)


def populate(registry: Registry, dockerd) -> dict[str, PushedImage]:
    """The standard images: schema2 (dockerd, 3 layers), schema2-b (shares
    its base), oci-gzip, oci-gzip-b (shares oci-gzip's base blob), oci-zstd,
    multi (an index of linux/amd64 and linux/arm64/v8)."""
    return {
        "schema2": push_schema2(dockerd, registry, "s2/app", "1", "schema2"),
        "schema2-b": push_schema2(dockerd, registry, "s2/second", "1", "schema2-b"),
        "oci-gzip": push_oci(registry, "oci/gzip", "1", "oci-gzip"),
        "oci-gzip-b": push_oci(registry, "oci/gzip-b", "1", "oci-gzip-b"),
        "oci-zstd": push_oci(registry, "oci/zstd", "1", "oci-zstd", compression="zstd"),
        "multi": push_oci(registry, "oci/multi", "1", "multi",
                          platforms=[("amd64", None), ("arm64", "v8")]),
    }
