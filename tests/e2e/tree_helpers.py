"""Folder trees for storage tests: a sample that holds everything a
filesystem records, and a digest that compares two trees by all of it."""

from __future__ import annotations

import hashlib
import os
import random

MIB = 1 << 20


def tree_digest(root: str) -> dict[str, tuple]:
    """{relative path: (mode, uid, gid, xattrs, content digest / link target)}."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                what = os.readlink(p)
            elif os.path.isfile(p):
                h = hashlib.md5()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(MIB), b""):
                        h.update(block)
                what = (h.hexdigest(), st.st_size, st.st_nlink)
            else:
                what = (st.st_rdev,)
            xattrs = () if os.path.islink(p) else tuple(sorted(
                (k, os.getxattr(p, k, follow_symlinks=False))
                for k in os.listxattr(p, follow_symlinks=False) if k.startswith("user.")))
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, xattrs, what)
    return out


def fill_sample(path: str, sparse_mib: int = 512) -> None:
    """Owners, modes, a hard link, a symlink, a user xattr, a FIFO, a
    sparse file, a long path and a non-ASCII name under ``path``."""
    os.makedirs(os.path.join(path, "sub/deep"))
    data = os.path.join(path, "sub/deep/data")
    with open(data, "wb") as f:
        f.write(os.urandom(3 * MIB))
    os.chown(data, 1234, 4321)
    os.setxattr(data, "user.note", b"kept")
    os.chmod(os.path.join(path, "sub"), 0o750)
    os.link(data, os.path.join(path, "hard"))
    os.symlink("/etc/passwd", os.path.join(path, "link"))
    os.mkfifo(os.path.join(path, "fifo"), 0o640)
    with open(os.path.join(path, "sparse"), "wb") as f:
        f.truncate(sparse_mib * MIB)
        f.write(b"head")
    long_dir = os.path.join(path, *(["a" * 60] * 3))
    os.makedirs(long_dir)
    with open(os.path.join(long_dir, "f\u00e9"), "w") as f:
        f.write("long")


def write_mixed(root: str, gib: float, rng: random.Random) -> list[str]:
    """About `gib` GiB of mixed files under ``root`` (three quarters
    incompressible, 0.25-2 MiB; a quarter compressible text of 64-256 KiB);
    returns their paths relative to ``root`` (backup tests and the backup
    bench)."""
    names, total, i = [], 0, 0
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    os.makedirs(os.path.join(root, "txt"), exist_ok=True)
    while total < gib * 1024 * MIB:
        if i % 4 == 0:
            path = os.path.join(root, "txt", f"t{i:05d}.log")
            line = f"{i} the quick brown fox {rng.random()}\n".encode()
            data = line * (rng.randint(64, 256) * 1024 // len(line))
        else:
            path = os.path.join(root, "bin", f"b{i:05d}.bin")
            data = rng.randbytes(rng.randint(1, 8) * MIB // 4)
        with open(path, "wb") as f:
            f.write(data)
        names.append(os.path.relpath(path, root))
        total += len(data)
        i += 1
    return names
