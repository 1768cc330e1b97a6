"""Issue 16, must-show 1: the README's first command works on a fresh
machine of this kind.

How the fresh machine is simulated: in private mount and PID namespaces
(`unshare -m -p -f`: every mount goes, and every process is killed, when
the test's namespace ends; the daemon inside sees no process of the host),
an overlay of this machine's root is the new root (its upper and work
folders on a tmpfs; the host is never changed), with its own /proc, /dev,
/sys, an empty /run, /tmp and /var/lib/berth (so a daemon of the host's,
with its state, is never seen); the checkout and the Rust toolchain are
bound in when they live on another filesystem than /. In it, the packages a fresh machine of this
kind lacks are purged (`dpkg --purge libseccomp-dev xfsprogs`: before
`scripts/setup` existed, the README's command failed at the link step with
"unable to find library -lseccomp"), and `crates/berth/src/main.rs` is
touched so that `cargo build --release` really compiles and links the
binary again (the rest of the release build is reused from this
checkout's target folder; scripts/test builds it first). Then the README's
first command runs, word for word, from the README itself (`sudo` is a
pass-through when the machine has none and we are root), and `docker
version` must get an answer from the daemon it started. The daemon is
stopped by its PID file; on a timeout the whole namespace is killed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import DOCKER_BIN

REPO = Path(__file__).resolve().parents[2]
FRESH_LACKS = ["libseccomp-dev", "xfsprogs", "netavark", "aardvark-dns"]

SCRIPT = r"""
set -euo pipefail
mount -t tmpfs scratch "$SCRATCH"
new=$SCRATCH/root
mkdir -p "$SCRATCH/upper" "$SCRATCH/work" "$new"
mount -t overlay fresh -o "lowerdir=/,upperdir=$SCRATCH/upper,workdir=$SCRATCH/work" "$new"
mount -t proc proc "$new/proc"
mount --rbind /dev "$new/dev"
mount --rbind /sys "$new/sys"
mount -t tmpfs run "$new/run"
mount -t tmpfs tmp "$new/tmp"
mkdir -p "$new/var/lib/berth" && mount -t tmpfs state "$new/var/lib/berth"
# The checkout and the Rust toolchain, when they live on other mounts than
# / (the overlay shows / only), are bound in as they are.
for dir in "$REPO" "$HOME/.cargo" "$HOME/.rustup"; do
  if [ -d "$dir" ] && [ "$(stat -c %d "$dir")" != "$(stat -c %d /)" ]; then
    mkdir -p "$new$dir" && mount --rbind "$dir" "$new$dir"
  fi
done
if [ -L /etc/resolv.conf ]; then   # e.g. into /run/systemd/resolve, now empty
  target=$(readlink -f /etc/resolv.conf)
  mkdir -p "$new$(dirname "$target")" && cp /etc/resolv.conf "$new$target"
fi
cp "$DOCKER_BIN" "$new/tmp/docker"
exec chroot "$new" /bin/bash -s <<'INSIDE'
set -euo pipefail
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_FRONTEND=noninteractive dpkg --purge --force-depends $FRESH_LACKS >/dev/null
for package in $FRESH_LACKS; do
  ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"
done
echo "fresh machine: purged $FRESH_LACKS"
command -v sudo >/dev/null || { sudo() { "$@"; }; export -f sudo; }
cd "$REPO"
touch crates/berth/src/main.rs
bash -c "$FIRST_COMMAND" > /tmp/first.log 2>&1 &
first=$!
for _ in $(seq 1 1200); do
  if /tmp/docker -H unix:///run/berth.sock version > /tmp/version.txt 2>&1; then
    echo "docker version answered"
    cat /tmp/version.txt
    break
  fi
  kill -0 "$first" 2>/dev/null || break   # the command ended without a daemon
  sleep 1
done
if [ -s /run/berth.pid ]; then kill "$(cat /run/berth.pid)"; else kill "$first" 2>/dev/null || true; fi
wait "$first" || true
echo "--- the README's first command printed (last lines) ---"
tail -n 40 /tmp/first.log
grep -m1 "setup: installing" /tmp/first.log || true
INSIDE
"""


def first_command() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M).group(1)
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    return lines[0]


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("dpkg") is None,
                    reason="needs unshare and dpkg (a Debian machine)")
def test_readme_first_command_on_a_fresh_machine():
    command = first_command()
    assert "scripts/setup" in command and "berth daemon" in command, command
    scratch = tempfile.mkdtemp(prefix="fresh-machine-", dir="/tmp")
    env = {**os.environ, "SCRATCH": scratch, "REPO": str(REPO), "FIRST_COMMAND": command,
           "FRESH_LACKS": " ".join(FRESH_LACKS), "DOCKER_BIN": shutil.which(DOCKER_BIN) or DOCKER_BIN}
    proc = subprocess.Popen(["unshare", "-m", "-p", "-f", "--propagation", "private",
                             "bash", "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=1800)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # unshare's child is the namespace's init
        out, _ = proc.communicate()
        pytest.fail(f"the fresh machine did not finish in 30 min:\n{out}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(out)  # the record of what the fresh machine did
    assert f"fresh machine: purged {' '.join(FRESH_LACKS)}" in out, out
    # scripts/setup found them missing and installed them …
    assert re.search(r"setup: installing .*libseccomp-dev", out), out
    installed = out.split("setup: installing", 1)[1].splitlines()[0]
    for package in ("xfsprogs", "netavark", "aardvark-dns"):
        assert package in installed, out
    # … the build linked, the daemon started with its defaults and answered.
    assert "docker version answered" in out, out
    version = re.search(r'^version = "(.+)"$', (REPO / "Cargo.toml").read_text(), re.M)
    assert re.search(rf"Server: berth\n Engine:\n  Version:\s+{re.escape(version.group(1))}\n", out), out


def test_cargo_install_gives_a_working_binary():
    """`cargo install --path crates/berth` (the README's second way in),
    into a scratch root; the target folder is this checkout's, so the
    release build scripts/test made is reused rather than redone."""
    dest = tempfile.mkdtemp(prefix="cargo-install-", dir="/tmp")
    env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "target")}
    try:
        p = subprocess.run(["cargo", "install", "--locked", "--path", "crates/berth", "--root", dest],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        assert p.returncode == 0, p.stderr
        berth = os.path.join(dest, "bin", "berth")
        out = subprocess.run([berth, "--version"], capture_output=True, text=True, check=True).stdout
        assert out.startswith("berth "), out
        help_text = subprocess.run([berth, "daemon", "--help"], capture_output=True, text=True,
                                   check=True).stdout
        assert "--thin-pool-size" in help_text, help_text
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_completions_and_man_pages_come_from_the_commands(tmp_path):
    """`berth completion SHELL` for bash, zsh and fish, and `berth man DIR`:
    generated from the clap definitions, so every command is in them; the
    bash script is loaded into a real bash and completes `berth vo`."""
    berth = os.environ.get("BERTH_BIN") or str(REPO / "target" / "debug" / "berth")
    scripts = {}
    for shell in ("bash", "zsh", "fish"):
        p = subprocess.run([berth, "completion", shell], capture_output=True, text=True, check=True)
        scripts[shell] = p.stdout
        assert "volume" in p.stdout and "snapshot" in p.stdout, shell
    completion = tmp_path / "berth.bash"
    completion.write_text(scripts["bash"])
    probe = (f"source {completion}; COMP_WORDS=(berth vo); COMP_CWORD=1; COMP_LINE='berth vo'; "
             "COMP_POINT=8; _berth berth vo berth; printf '%s\\n' \"${COMPREPLY[@]}\"")
    words = subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout.split()
    assert words == ["volume"], words
    bad = subprocess.run([berth, "completion", "tcsh"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid value 'tcsh'" in bad.stderr, bad.stderr
    pages = tmp_path / "man"
    subprocess.run([berth, "man", str(pages)], capture_output=True, text=True, check=True)
    names = sorted(p.name for p in pages.iterdir())
    assert {"berth.1", "berth-daemon.1", "berth-volume-create.1",
            "berth-volume-snapshot-create.1"} <= set(names), names
    assert "berth-shim.1" not in names  # hidden commands stay hidden
    page = (pages / "berth-volume-create.1").read_text()
    assert page.startswith(".ie") or ".TH" in page, page[:200]
    assert "\\-\\-driver" in page or "--driver" in page, page


def test_install_puts_binary_completions_man_pages_and_units_in_place(tmp_path):
    """`scripts/setup --install` into a DESTDIR: what a service needs."""
    if not (REPO / "target" / "release" / "berth").exists():
        pytest.skip("no release build (scripts/test makes one)")
    dest = tmp_path / "dest"
    p = subprocess.run([str(REPO / "scripts" / "setup"), "--install"], env={**os.environ, "DESTDIR": str(dest)},
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for rel in ["usr/local/bin/berth", "usr/share/bash-completion/completions/berth",
                "usr/share/zsh/vendor-completions/_berth",
                "usr/share/fish/vendor_completions.d/berth.fish",
                "usr/local/share/man/man1/berth-daemon.1",
                "etc/systemd/system/berth.service", "etc/systemd/system/berth.socket"]:
        assert (dest / rel).is_file(), rel
    assert os.access(dest / "usr/local/bin/berth", os.X_OK)
    assert "_berth()" in (dest / "usr/share/bash-completion/completions/berth").read_text()
    assert not list(dest.glob("berth.*.tmp"))
