"""Issue 16, must-show 2: the daemon's configuration file. Each key berth
takes changes what the daemon does; unknown keys, keys also given as
flags, and keys berth cannot honour are refused with a clear message
(dockerd's words for the first two); SIGHUP reloads the log level."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BERTH_BIN, BerthDaemon, log_tail, unix_http, unmount_all_under

# With scripts/test's two pytest-xdist workers, the files of group "netpools"
# (test_readme.py, test_container_networks.py, test_service.py,
# test_daemon_config.py) never run at the same time: daemons started with
# --config-file get no private bridge (so `berth0`), their default one from
# Docker's default address pools (172.17.0.0/16 and up): a daemon takes the
# first one no route of the host has, so two at once take the same one.
pytestmark = pytest.mark.xdist_group("netpools")


def config_daemon(tmp_path, config: dict, *flags) -> BerthDaemon:
    """A daemon whose socket, root and pid file come from the file alone."""
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(config))
    d = BerthDaemon(extra_args=["--config-file", str(path), *flags])
    d.config_path = path
    return d


def start_with_file_only(d: BerthDaemon) -> subprocess.Popen:
    """Starts `berth daemon --config-file F` with no other flag."""
    logf = open(d.log, "ab")
    return subprocess.Popen([d.bin, "daemon", *d.extra_args], stdout=logf, stderr=logf)


def wait_for_socket(sock: str, proc: subprocess.Popen, log: str, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_tail(log)
        try:
            if unix_http(sock, "GET", "/_ping", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no daemon on {sock}\n{log_tail(log)}")


def test_each_key_changes_what_the_daemon_does(tmp_path):
    work = tmp_path
    sock, root, pid = str(work / "api.sock"), str(work / "state"), str(work / "d.pid")
    pool = str(work / "pool.img")
    config = {
        "hosts": [f"unix://{sock}"], "data-root": root, "pidfile": pid,
        "log-level": "debug", "log-format": "json",
        "thin-pool-size": "3G", "thin-pool-file": pool, "thin-default-size": "96M",
        "thin-high-water": 1, "trim-interval": 1,
        "live-restore": True, "log-driver": "json-file",
        "metrics-addr": "127.0.0.1:0", "web-addr": "127.0.0.1:0", "web-admin": True,
        "web-sample-interval": 1,
    }
    d = config_daemon(work, config)
    proc = start_with_file_only(d)
    try:
        wait_for_socket(sock, proc, d.log)
        assert os.path.isfile(os.path.join(root, "berth.db"))          # data-root
        assert open(pid).read().strip() == str(proc.pid)                 # pidfile
        d.sock, d.host = sock, "unix://" + sock                          # hosts
        d.docker("volume", "create", "-d", "thin", "t1")
        status = json.loads(d.docker("volume", "inspect", "-f", "{{json .Status}}", "t1").stdout)
        assert status["Size"] == "96MiB", status                         # thin-default-size
        assert os.path.isfile(pool)                                      # thin-pool-file
        assert os.path.getsize(pool) == 3 << 30                          # thin-pool-size
        # thin-high-water 1 %: the pool is past it once two volumes exist.
        d.docker("volume", "create", "-d", "thin", "-o", "size=2G", "t2")
        status = json.loads(d.docker("volume", "inspect", "-f", "{{json .Status}}", "t2").stdout)
        d.docker("volume", "inspect", "no-such-volume", check=False)   # a 404: logged at debug
        time.sleep(1.5)                                                  # trim-interval 1 s
        lines = [json.loads(line) for line in open(d.log) if line.startswith("{")]
        assert lines, "log-format json: no JSON line"
        assert any(line["level"] == "DEBUG" for line in lines), "log-level debug: no DEBUG line"
        assert any("periodic trim" in line["fields"].get("message", "") for line in lines), \
            "trim-interval: no periodic trim"
        assert "past its high-water mark of 1%" in status.get("Warning", ""), status
        text = open(d.log).read()
        assert '"serving metrics"' in text and '"serving the web view"' in text  # metrics-addr, web-addr
        assert os.stat(os.path.join(root, "web-admin.token")).st_mode & 0o777 == 0o600  # web-admin
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        unmount_all_under(root)  # the thin pool stays mounted after a stop
        d.cleanup()  # the BerthDaemon's own folder (its log)


def test_log_opts_and_default_ulimits_apply_to_containers(berth_factory, tmp_path):
    """`log-opts` merge into each json-file container's LogConfig at create
    (its own keys win, `inspect` shows the merged set, rotation follows);
    `default-ulimits` fill in at start the limits a container leaves unset."""
    from busybox_image import import_busybox, remove_all_containers
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({
        "log-opts": {"max-size": "2k", "max-file": "2"},
        "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1234, "Hard": 2345},
                            "nproc": {"Name": "nproc", "Soft": 777, "Hard": 777}},
    }))
    d = berth_factory(extra_args=["--config-file", str(path)]).start()
    try:
        image = import_busybox(d, "cfg-test:v1")
        loud = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done"
        d.docker("run", "--name", "plain", image, "sh", "-c", loud)
        d.docker("run", "--name", "own", "--log-opt", "max-size=5k", image, "sh", "-c", loud)
        log_config = lambda name: json.loads(
            d.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", name).stdout)
        assert log_config("plain") == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "2k"}}
        assert log_config("own") == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "5k"}}
        for name, limit in [("plain", 2000), ("own", 5000)]:
            cid = d.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
            folder = os.path.join(d.root, "containers", cid)
            logs = [f for f in os.listdir(folder) if f.startswith(cid + "-json.log")]
            assert 1 <= len(logs) <= 2, logs                               # max-file 2
            assert all(os.path.getsize(os.path.join(folder, f)) <= limit for f in logs), name
        assert d.docker("logs", "--tail", "1", "plain").stdout == "line 2999\n"
        limits = "echo $(ulimit -Sn) $(ulimit -Hn) $(ulimit -u)"
        assert d.docker("run", "--rm", image, "sh", "-c", limits).stdout.split() == ["1234", "2345", "777"]
        own = d.docker("run", "--rm", "--ulimit", "nofile=100:200", image, "sh", "-c", limits)
        assert own.stdout.split() == ["100", "200", "777"]
        # Defaults are the daemon's, not recorded in the container.
        assert d.docker("inspect", "-f", "{{json .HostConfig.Ulimits}}", "plain").stdout.strip() in ("null", "[]")
    finally:
        remove_all_containers(d)


@pytest.mark.parametrize("config, flags, words", [
    ({"log-opts": {"max-size": "lots"}}, [], "invalid size: 'lots'"),
    ({"log-opts": {"colour": "blue"}}, [], "unknown log opt 'colour' for json-file log driver"),
    ({"log-opts": {"max-size": 10}}, [], '"log-opts": "max-size" must be a string'),
    ({"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 10, "Hard": 5}}}, [],
     "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
    ({"default-ulimits": {"bogus": {"Name": "bogus", "Soft": 1, "Hard": 1}}}, [], "invalid ulimit type: bogus"),
    ({"default-ulimits": {"nofile": 5}}, [], '"default-ulimits" must map names'),
    ({"default-ulimits": {"nofile": {"Name": "nofile", "Soft": -1, "Hard": -1}}}, [],
     "ulimit nofile cannot be unlimited"),
    ({"log-opts": {"max-size": "1m"}}, ["--log-opt", "max-file=2"],
     "the following directives are specified both as a flag and in the configuration file: "
     "log-opts: (from flag: max-file=2"),
])
def test_bad_container_defaults_are_refused(tmp_path, config, flags, words):
    refused(tmp_path, config, flags, words)


@pytest.mark.parametrize("config, flags, words", [
    ({"zeta": 1, "alpha": True}, [],
     "the following directives don't match any configuration option: alpha, zeta"),
    ({"log-level": "warn"}, ["--log-level", "debug"],
     "the following directives are specified both as a flag and in the configuration file: "
     "log-level: (from flag: debug, from file: warn)"),
    ({"tlsverify": "yes"}, [], '"tlsverify" must be true or false'),
    ({"live-restore": False}, [], '"live-restore" can only be true'),
    ({"hosts": []}, [], '"hosts" must name at least one address'),
    ({"trim-interval": "often"}, [], '"trim-interval" must be a whole number'),
])
def test_bad_files_are_refused_and_nothing_starts(tmp_path, config, flags, words):
    refused(tmp_path, config, flags, words)


@pytest.mark.parametrize("hosts, words", [
    (["tcp://127.0.0.1:1"], "a tcp:// listener needs --tlsverify"),
    (["unix:///a.sock", "/a.sock"], "--host /a.sock is given twice"),
])
def test_hosts_from_the_file_are_checked_like_flags(tmp_path, hosts, words):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"hosts": hosts}))
    root = tmp_path / "root"
    p = subprocess.run([BERTH_BIN, "daemon", "--config-file", str(path), "--root", str(root),
                        "--pidfile", str(tmp_path / "pid")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and words in p.stderr, p.stderr
    assert not root.exists()


def test_an_unknown_log_level_is_refused(tmp_path):
    # tracing would read a bare unknown word as a target name and log nothing.
    p = subprocess.run([BERTH_BIN, "daemon", "--validate", "--log-level", "nonsense"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and 'invalid log level "nonsense"' in p.stderr, p.stderr
    ok = subprocess.run([BERTH_BIN, "daemon", "--validate", "--log-level", "berth_core=debug,info"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def refused(tmp_path, config, flags, words):
    """Starting with the file fails with `words` and makes nothing; so does
    --validate."""
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(config))
    root = tmp_path / "root"
    own = {"data-root": ["--root", str(root)], "pidfile": ["--pidfile", str(tmp_path / "pid")],
           "hosts": ["--host", f"unix://{tmp_path}/s.sock"]}
    place = [arg for key, args in own.items() if key not in config for arg in args]
    p = subprocess.run([BERTH_BIN, "daemon", "--config-file", str(path), *place, *flags],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p
    assert f"unable to configure the berth daemon with file {path}: {words}" in p.stderr, p.stderr
    assert not root.exists()
    # --validate says the same without starting.
    v = subprocess.run([BERTH_BIN, "daemon", "--config-file", str(path), "--validate", *flags],
                       capture_output=True, text=True)
    assert v.returncode == 1 and words in v.stderr, v.stderr


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"log-level": ')
    p = subprocess.run([BERTH_BIN, "daemon", "--config-file", str(bad), "--validate"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "unable to configure the berth daemon with file" in p.stderr
    missing = subprocess.run([BERTH_BIN, "daemon", "--config-file", str(tmp_path / "none.json"),
                              "--validate"], capture_output=True, text=True)
    assert missing.returncode == 1 and "No such file" in missing.stderr, missing.stderr


def test_sighup_reloads_the_log_level(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-level": "info", "trim-interval": 7}))
    d = BerthDaemon(extra_args=["--config-file", str(path)])
    d.start()
    try:
        d.docker("volume", "create", "before")
        assert "volume created volume=before" in open(d.log).read()
        path.write_text(json.dumps({"log-level": "warn", "trim-interval": 7}))
        os.kill(d.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "configuration reloaded" not in open(d.log).read():
            assert time.monotonic() < deadline, log_tail(d.log)
            time.sleep(0.05)
        d.docker("volume", "create", "after")
        assert "volume created volume=after" not in open(d.log).read()
        # A setting that takes a restart is named, not silently ignored.
        path.write_text(json.dumps({"log-level": "warn", "trim-interval": 5}))  # running: 7
        os.kill(d.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "takes a restart of the daemon setting=trim-interval" not in open(d.log).read():
            assert time.monotonic() < deadline, log_tail(d.log)
            time.sleep(0.05)
        # So is one taken out of the file (back to its default, 3600).
        path.write_text(json.dumps({"log-level": "warn"}))
        os.kill(d.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while open(d.log).read().count("takes a restart of the daemon setting=trim-interval") < 2:
            assert time.monotonic() < deadline, log_tail(d.log)
            time.sleep(0.05)
        # A file that became invalid keeps the running level, and says so.
        path.write_text('{"nope": 1}')
        os.kill(d.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "configuration not reloaded" not in open(d.log).read():
            assert time.monotonic() < deadline, log_tail(d.log)
            time.sleep(0.05)
        assert d.running()
    finally:
        d.cleanup()
