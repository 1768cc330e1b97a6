"""Issue 14, host side: a Docker volume plugin written in another language
(tests/e2e/volume_plugin.py: Python's http.server on a unix socket,
storing folders) is discovered as dockerd discovers plugins (a socket in
the socket folder, or a .spec file naming its address), activated at
first use, and used as a driver: `docker volume create -d`, a container
writing into the volume, Mount/Unmount pairs with matching IDs in the
plugin's own log, `volume rm` reaching its Remove. Labels and options stay
in berth's database (plugins keep none)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from busybox_image import berth_with_cleanup, import_busybox

HERE = os.path.dirname(os.path.abspath(__file__))


class Plugin:
    """The test plugin, running as a process of its own."""

    def __init__(self, socket_path: str, work: str, *flags: str):
        self.socket = socket_path
        if os.path.exists(socket_path):
            os.unlink(socket_path)  # a killed plugin's, not this one's
        self.storage = os.path.join(work, "storage")
        self.log = os.path.join(work, "calls.log")
        open(self.log, "w").close()  # this instance's calls only
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "volume_plugin.py"), socket_path, self.storage,
             self.log, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path):
            assert self.proc.poll() is None, "the plugin exited"
            assert time.monotonic() < deadline, "the plugin made no socket"
            time.sleep(0.05)

    def calls(self, name: str | None = None) -> list[dict]:
        try:
            with open(self.log) as f:
                entries = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [e for e in entries if name is None or e["call"] == name]

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def plugdirs():
    work = tempfile.mkdtemp(prefix="bpl-", dir="/tmp")
    for sub in ("run", "etc", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10"):
        os.makedirs(os.path.join(work, sub))
    yield work
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def pd(plugdirs):
    """A daemon that looks for plugins in the test's own folders."""
    gen = berth_with_cleanup(["--plugin-socket-dir", os.path.join(plugdirs, "run"),
                              "--plugin-spec-dir", os.path.join(plugdirs, "etc")])
    d = next(gen)
    try:
        d.image = import_busybox(d, "plugtest:v1")
        yield d
    finally:
        gen.close()


@pytest.fixture
def plugin(plugdirs):
    p = Plugin(os.path.join(plugdirs, "run", "testplug.sock"), os.path.join(plugdirs, "p1"))
    yield p
    p.stop()


def test_a_plugin_in_another_language_is_a_driver_for_containers(pd, plugin):
    pd.docker("volume", "create", "-d", "testplug", "-o", "color=blue", "--label", "team=x", "pv")
    (create,) = plugin.calls("VolumeDriver.Create")
    assert create["body"] == {"Name": "pv", "Opts": {"color": "blue"}}
    assert plugin.calls("Plugin.Activate"), "activated at first use"
    info = json.loads(pd.docker("volume", "inspect", "pv").stdout)[0]
    assert info["Driver"] == "testplug"
    assert info["Options"] == {"color": "blue"} and info["Labels"] == {"team": "x"}
    assert info["Mountpoint"] == os.path.join(plugin.storage, "pv")
    listed = pd.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.split("\n")
    assert "testplug pv" in listed

    pd.docker("run", "--rm", "-v", "pv:/data", pd.image, "sh", "-c", "echo hello > /data/f")
    with open(os.path.join(plugin.storage, "pv", "f")) as f:
        assert f.read() == "hello\n"
    mounts = [c["body"] for c in plugin.calls("VolumeDriver.Mount")]
    unmounts = [c["body"] for c in plugin.calls("VolumeDriver.Unmount")]
    assert len(mounts) == 1 and len(unmounts) == 1, (mounts, unmounts)
    assert mounts[0]["ID"] and mounts[0] == unmounts[0], (mounts, unmounts)

    pd.docker("volume", "rm", "pv")
    (remove,) = plugin.calls("VolumeDriver.Remove")
    assert remove["body"] == {"Name": "pv"}
    assert not os.path.exists(os.path.join(plugin.storage, "pv"))
    assert "pv" not in pd.docker("volume", "ls", "-q").stdout.split()


def test_two_containers_mount_with_their_own_ids(pd, plugin):
    pd.docker("volume", "create", "-d", "testplug", "shared")
    a = pd.docker("run", "-d", "-v", "shared:/d", pd.image, "sleep", "300").stdout.strip()
    b = pd.docker("run", "-d", "-v", "shared:/d", pd.image, "sleep", "300").stdout.strip()
    try:
        ids = {c["body"]["ID"] for c in plugin.calls("VolumeDriver.Mount")}
        assert len(ids) == 2, ids
        busy = pd.docker("volume", "rm", "shared", check=False)
        assert busy.returncode != 0 and "in use" in busy.stderr, busy.stderr
    finally:
        pd.docker("rm", "-f", a, b)
    unmounted = {c["body"]["ID"] for c in plugin.calls("VolumeDriver.Unmount")}
    assert ids <= unmounted, (ids, unmounted)
    pd.docker("volume", "rm", "shared")


def test_a_plugin_named_by_a_spec_file_and_an_unknown_one(pd, plugdirs):
    sock = os.path.join(plugdirs, "p2", "elsewhere.sock")
    other = Plugin(sock, os.path.join(plugdirs, "p2"))
    try:
        with open(os.path.join(plugdirs, "etc", "specplug.spec"), "w") as f:
            f.write(f"unix://{sock}\n")
        pd.docker("volume", "create", "-d", "specplug", "sv")
        assert os.path.isdir(os.path.join(other.storage, "sv"))
        pd.docker("volume", "rm", "sv")
    finally:
        other.stop()
    missing = pd.docker("volume", "create", "-d", "nosuchplug", "nv", check=False)
    assert missing.returncode != 0
    assert 'plugin "nosuchplug" not found' in missing.stderr, missing.stderr


def test_a_plugin_that_went_away_keeps_its_volumes_listed_and_comes_back(pd, plugdirs):
    p = Plugin(os.path.join(plugdirs, "run", "testplug.sock"), os.path.join(plugdirs, "p1"))
    pd.docker("volume", "create", "-d", "testplug", "stay")
    p.stop()
    os.unlink(p.socket)
    assert "stay" in pd.docker("volume", "ls", "-q").stdout.split()
    status, body = pd.api("GET", "/volumes")
    assert status == 200 and "stay" in [v["Name"] for v in body["Volumes"]], body
    # Active before, so its List is tried: it cannot be reached.
    assert any("testplug" in w and "cannot connect" in w for w in body["Warnings"] or []), body
    gone = pd.docker("run", "--rm", "-v", "stay:/d", pd.image, "true", check=False)
    assert gone.returncode != 0 and "testplug" in gone.stderr, gone.stderr
    back = Plugin(p.socket, os.path.join(plugdirs, "p1"))
    try:
        pd.docker("run", "--rm", "-v", "stay:/d", pd.image, "sh", "-c", "echo x > /d/x")
        assert os.path.exists(os.path.join(back.storage, "stay", "x"))
        pd.docker("volume", "rm", "stay")
    finally:
        back.stop()


@pytest.fixture(scope="module")
def quick(plugdirs):
    """A daemon giving plugins 6 s for Mount (3 s for other calls)."""
    run = os.path.join(plugdirs, "run-quick")
    os.makedirs(run, exist_ok=True)
    gen = berth_with_cleanup(["--plugin-socket-dir", run, "--plugin-timeout", "6"])
    d = next(gen)
    try:
        d.image = import_busybox(d, "plugquick:v1")
        d.plugin_run = run
        yield d
    finally:
        gen.close()


def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def test_a_plugin_that_hangs_on_mount_blocks_nothing_else(quick, plugdirs):
    """Must-show 2: while a container's Mount hangs in the plugin, volume
    ls, inspect of a local volume and a run with a local volume answer
    (each well under the plugin's 6 s timeout), and the hung call fails
    after it with an error naming the plugin."""
    hung = Plugin(os.path.join(quick.plugin_run, "hangplug.sock"),
                  os.path.join(plugdirs, "p3"), "--hang-mount")
    try:
        quick.docker("volume", "create", "-d", "hangplug", "hv")
        quick.docker("volume", "create", "lv")
        waiting = subprocess.Popen(
            ["docker", "-H", quick.host, "run", "--rm", "-v", "hv:/d", quick.image, "true"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 5
        while not hung.calls("VolumeDriver.Mount"):
            assert time.monotonic() < deadline, "the plugin was never asked to mount"
            time.sleep(0.05)
        took = {
            "volume ls": timed(lambda: quick.docker("volume", "ls")),
            "inspect local": timed(lambda: quick.docker("volume", "inspect", "lv")),
            "run local": timed(lambda: quick.docker("run", "--rm", "-v", "lv:/d", quick.image,
                                                    "true")),
        }
        print("while Mount hangs:", {k: f"{v:.2f} s" for k, v in took.items()})
        assert waiting.poll() is None, "the hung run ended before the others were timed"
        for what, seconds in took.items():
            assert seconds < 4.0, (what, seconds)
        _, err = waiting.communicate(timeout=30)
        assert waiting.returncode != 0
        assert "hangplug" in err and "VolumeDriver.Mount" in err and "6 s" in err, err
    finally:
        hung.stop()


def test_a_plugin_whose_list_fails_is_a_warning_beside_the_other_volumes(pd, plugdirs):
    """Must-show 3: `GET /volumes` returns every volume (the plugin's from
    berth's rows) and the plugin's List error as a warning."""
    broken = Plugin(os.path.join(plugdirs, "run", "listfail.sock"),
                    os.path.join(plugdirs, "p4"), "--fail-list")
    try:
        pd.docker("volume", "create", "-d", "listfail", "lf")
        pd.docker("volume", "create", "plain")
        status, body = pd.api("GET", "/volumes")
        assert status == 200, body
        names = {v["Name"]: v["Driver"] for v in body["Volumes"]}
        assert names.get("lf") == "listfail" and names.get("plain") == "local", names
        warnings = body["Warnings"] or []
        assert any("listfail" in w and "the list is broken today" in w for w in warnings), body
        shown = pd.docker("volume", "ls").stdout
        assert "lf" in shown and "plain" in shown
        pd.docker("volume", "rm", "lf", "plain")
    finally:
        broken.stop()


def test_plugin_volumes_outlive_a_restart_without_their_plugin(pd, plugdirs):
    """A plugin that is not there when the daemon starts: its volumes are
    listed (from berth's rows) with a warning, never dropped, and used
    again once it is back."""
    p = Plugin(os.path.join(plugdirs, "run", "testplug.sock"), os.path.join(plugdirs, "p1"))
    pd.docker("volume", "create", "-d", "testplug", "--label", "keep=1", "durable")
    p.stop()  # its socket file stays: connecting is refused
    t0 = time.monotonic()
    pd.restart()
    # Start-up calls no plugin (activation alone would retry for 30 s).
    assert time.monotonic() - t0 < 20, time.monotonic() - t0
    status, body = pd.api("GET", "/volumes")
    assert status == 200, body
    listed = {v["Name"]: v for v in body["Volumes"]}
    assert listed["durable"]["Driver"] == "testplug"
    assert listed["durable"]["Labels"] == {"keep": "1"}
    assert any("testplug" in w and "not available" in w for w in body["Warnings"] or []), body
    back = Plugin(p.socket, os.path.join(plugdirs, "p1"))
    try:
        pd.docker("run", "--rm", "-v", "durable:/d", pd.image, "sh", "-c", "echo y > /d/y")
        assert os.path.exists(os.path.join(back.storage, "durable", "y"))
        pd.docker("volume", "rm", "durable")
    finally:
        back.stop()


def test_docker_plugin_ls_shows_the_plugins_berth_knows(pd, plugdirs):
    """GET /plugins in Docker's shape: `docker plugin ls` and `inspect`
    show the plugins in berth's folders; installing a managed plugin is
    refused with a message saying how to add one."""
    p = Plugin(os.path.join(plugdirs, "run", "testplug.sock"), os.path.join(plugdirs, "p1"))
    try:
        shown = pd.docker("plugin", "ls", "--format", "{{.Name}} {{.Enabled}}").stdout.split("\n")
        assert "testplug true" in shown, shown
        info = json.loads(pd.docker("plugin", "inspect", "testplug").stdout)[0]
        assert info["Name"] == "testplug"
        assert info["Config"]["Interface"]["Types"] == ["docker.volumedriver/1.0"]
        assert info["Config"]["Interface"]["Socket"] == f"unix://{p.socket}"
        missing = pd.docker("plugin", "inspect", "nosuchplug", check=False)
        assert missing.returncode != 0
        install = pd.docker("plugin", "install", "--grant-all-permissions", "vieux/sshfs",
                            check=False)
        assert install.returncode != 0 and "managed" in install.stderr, install.stderr
    finally:
        p.stop()


def test_a_hostile_mountpoint_is_refused_and_a_hung_list_is_only_a_warning(quick, plugdirs):
    """A plugin answering Mount with a relative path (resolved against the
    daemon's folder, it could be the host's root) is refused, naming the
    plugin; one whose List hangs makes `GET /volumes` wait at most 5 s and
    say so in a warning."""
    for mountpoint, words in (("../", "not an existing absolute folder"),
                              (quick.root, "inside berth's own folders"),
                              (f"{quick.root}/../{os.path.basename(quick.root)}/volumes", "inside berth's"),
                              ("/", "the host's root")):
        bad = Plugin(os.path.join(quick.plugin_run, "relplug.sock"), os.path.join(plugdirs, "p5"),
                     "--mountpoint", mountpoint)
        try:
            quick.docker("volume", "create", "-d", "relplug", "rel")
            run = quick.docker("run", "--rm", "-v", "rel:/d", quick.image, "ls", "/d", check=False)
            assert run.returncode != 0, run.stdout
            assert "relplug" in run.stderr and words in run.stderr, (mountpoint, run.stderr)
            # The plugin counted that ID as mounting: it is released.
            mounted = [c["body"]["ID"] for c in bad.calls("VolumeDriver.Mount")]
            released = [c["body"]["ID"] for c in bad.calls("VolumeDriver.Unmount")]
            assert mounted and set(mounted) <= set(released), (mounted, released)
            quick.docker("volume", "rm", "rel")
        finally:
            bad.stop()
    slow = Plugin(os.path.join(quick.plugin_run, "slowlist.sock"), os.path.join(plugdirs, "p6"),
                  "--hang-list")
    try:
        quick.docker("volume", "create", "-d", "slowlist", "sl")
        t0 = time.monotonic()
        status, body = quick.api("GET", "/volumes", timeout=60)
        took = time.monotonic() - t0
        assert status == 200 and "sl" in [v["Name"] for v in body["Volumes"]], body
        assert any("slowlist" in w for w in body["Warnings"] or []), body
        assert took < 30, took  # 5 s by design; the plugin's own timeout is 3 s here
    finally:
        slow.stop()


def test_a_refused_unmount_does_not_keep_the_volume_in_use(pd, plugdirs):
    """The plugin refuses Unmount: the container is still removed, and the
    volume is no longer in use by it (Docker drops the reference)."""
    stuck = Plugin(os.path.join(plugdirs, "run", "stuckplug.sock"), os.path.join(plugdirs, "p7"),
                   "--fail-unmount")
    try:
        pd.docker("volume", "create", "-d", "stuckplug", "sticky")
        c = pd.docker("run", "-d", "-v", "sticky:/d", pd.image, "sleep", "300").stdout.strip()
        pd.docker("rm", "-f", c)
        assert stuck.calls("VolumeDriver.Unmount"), "Unmount was never asked"
        pd.docker("volume", "rm", "sticky")
        assert stuck.calls("VolumeDriver.Remove")
    finally:
        stuck.stop()


def test_volumes_a_plugin_lists_are_adopted_and_lost_ones_warned(pd, plugdirs):
    """As Docker lists what a plugin's List gives: a volume the plugin has
    and berth has no row for (made through another engine) is listed and
    usable; a row whose volume the plugin no longer lists is kept, with a
    warning, never dropped silently."""
    p = Plugin(os.path.join(plugdirs, "run", "adoptplug.sock"), os.path.join(plugdirs, "p8"))
    try:
        pd.docker("volume", "create", "-d", "adoptplug", "known")
        os.makedirs(os.path.join(p.storage, "elsewhere"))  # made behind berth's back
        listed = pd.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.split("\n")
        assert "adoptplug elsewhere" in listed and "adoptplug known" in listed, listed
        info = json.loads(pd.docker("volume", "inspect", "elsewhere").stdout)[0]
        assert info["Driver"] == "adoptplug" and info["Labels"] in (None, {}), info
        assert info["Mountpoint"] == os.path.join(p.storage, "elsewhere")
        shutil.rmtree(os.path.join(p.storage, "known"))  # lost behind berth's back
        status, body = pd.api("GET", "/volumes")
        assert status == 200, body
        assert "known" in [v["Name"] for v in body["Volumes"]], "kept from the row"
        assert any("1 volumes of plugin adoptplug are not in its List" in w and w.endswith("known")
                   for w in body["Warnings"] or []), body["Warnings"]
        pd.docker("volume", "rm", "elsewhere")
        assert p.calls("VolumeDriver.Remove")[-1]["body"] == {"Name": "elsewhere"}
        assert not os.path.exists(os.path.join(p.storage, "elsewhere"))
    finally:
        pd.docker("volume", "rm", "-f", "known", check=False)
        p.stop()


def test_plugin_volume_operations_a_crash_cut_short_are_settled(berth_factory, plugdirs):
    """kill -9 while a plugin's Create or Remove hangs leaves a creating or
    removing row; once the plugin answers again (no daemon restart of its
    own needed), the row is settled by what the plugin has: a volume it
    made is kept (ready), one it lacks is forgotten, a remove is finished."""
    run = os.path.join(plugdirs, "run")
    sock, work = os.path.join(run, "crashplug.sock"), os.path.join(plugdirs, "p9")
    d = berth_factory(extra_args=["--plugin-socket-dir", run,
                                  "--plugin-spec-dir", os.path.join(plugdirs, "etc")])

    def cut_short(flag: str, *docker_args: str, call: str) -> None:
        """Runs a docker command while the plugin hangs on `call`, then
        kills the daemon (-9) and the plugin."""
        hung = Plugin(sock, work, flag)
        try:
            d.start()
            cmd = subprocess.Popen(["docker", "-H", d.host, *docker_args],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while not hung.calls(call):
                assert time.monotonic() < deadline, f"{call} never reached the plugin"
                time.sleep(0.05)
            d.kill9()
            cmd.wait(timeout=30)
        finally:
            hung.stop()

    Plugin(sock, work).stop()  # its storage folder, made once
    cut_short("--hang-create-after", "volume", "create", "-d", "crashplug", "made", call="VolumeDriver.Create")
    cut_short("--hang-create-before", "volume", "create", "-d", "crashplug", "never", call="VolumeDriver.Create")
    plugin = Plugin(sock, work)
    try:
        d.start()
        d.docker("volume", "create", "-d", "crashplug", "doomed")
        plugin.stop()
        d.stop()
        cut_short("--hang-remove", "volume", "rm", "doomed", call="VolumeDriver.Remove")
        assert os.path.isdir(os.path.join(plugin.storage, "doomed"))
        plugin = Plugin(sock, work)
        d.start()

        def settled() -> bool:
            names = set(d.list_volumes())
            return names == {"made"} and not os.path.exists(os.path.join(plugin.storage, "doomed"))
        deadline = time.monotonic() + 60
        while not settled():
            assert time.monotonic() < deadline, (sorted(d.list_volumes()), os.listdir(plugin.storage))
            time.sleep(0.2)
        assert plugin.calls("VolumeDriver.Remove")[-1]["body"] == {"Name": "doomed"}
        assert not os.path.exists(os.path.join(plugin.storage, "never"))
        info = json.loads(d.docker("volume", "inspect", "made").stdout)[0]
        assert info["Driver"] == "crashplug", info
        d.docker("volume", "rm", "made")
        # The names are free again.
        d.docker("volume", "create", "-d", "crashplug", "never")
        d.docker("volume", "rm", "never")
    finally:
        plugin.stop()


def test_an_active_plugin_that_moves_is_found_at_its_new_address(pd, plugdirs):
    """A plugin named by a spec file comes back at another socket: the
    next use activates it there, without a daemon restart."""
    spec = os.path.join(plugdirs, "etc", "moving.spec")
    for sub in ("a", "b"):
        os.makedirs(os.path.join(plugdirs, "p10", sub), exist_ok=True)
    first = Plugin(os.path.join(plugdirs, "p10", "one.sock"), os.path.join(plugdirs, "p10", "a"))
    second = None
    try:
        with open(spec, "w") as f:
            f.write(f"unix://{first.socket}\n")
        pd.docker("volume", "create", "-d", "moving", "mv1")
        first.stop()
        second = Plugin(os.path.join(plugdirs, "p10", "two.sock"), os.path.join(plugdirs, "p10", "b"))
        with open(spec, "w") as f:
            f.write(f"unix://{second.socket}\n")
        pd.docker("volume", "create", "-d", "moving", "mv2")
        assert os.path.isdir(os.path.join(second.storage, "mv2"))
        assert second.calls("Plugin.Activate"), "activated again at the new address"
    finally:
        pd.docker("volume", "rm", "-f", "mv1", "mv2", check=False)
        os.unlink(spec)
        first.stop()
        if second:
            second.stop()
