"""Headless Chromium (Debian's `chromium`) for the web view's tests: a
page's DOM after its scripts ran, or a screenshot of it.

Every run has a fresh profile and a proxy that goes nowhere for every host
but loopback (`--proxy-server` at a closed port; Chromium never proxies
loopback): a page that needed anything from outside would not render, as
on a machine without network access."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.environ.get("BERTH_TEST_ARTIFACTS", os.path.join(REPO, "target", "test-artifacts"))

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--proxy-server=http://127.0.0.1:9",
         "--virtual-time-budget=10000"]


def _run(url: str, extra: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="berth-chromium-", dir="/tmp")
    try:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dom(url: str) -> str:
    """The page's DOM, serialized, once its scripts have run."""
    out = _run(url, ["--dump-dom"])
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def screenshot(url: str, name: str, size=(1280, 1100)) -> str:
    """Saves a PNG of the page under ARTIFACTS/web/NAME; returns its path."""
    folder = os.path.join(ARTIFACTS, "web")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    if os.path.exists(path):
        os.unlink(path)
    out = _run(url, [f"--screenshot={path}", f"--window-size={size[0]},{size[1]}"])
    assert out.returncode == 0 and os.path.exists(path), out.stderr[-2000:]
    return path
