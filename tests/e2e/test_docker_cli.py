"""Must-show 1: the stock docker CLI drives berth's volume API unchanged.

Every test gets a fresh berth daemon (fixture ``berth``) and runs the real
``docker`` CLI against it with ``-H unix://...``.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from conftest import HEX64, RFC3339_SECONDS

ANON = "com.docker.volume.anonymous"
MIB = 1024 * 1024


def names(out: str) -> list[str]:
    return [line for line in out.splitlines() if line]


def inspect(berth, *vols, **kw):
    proc = berth.docker("volume", "inspect", *vols, **kw)
    return json.loads(proc.stdout)


def write_file(path, size):
    with open(path, "wb") as f:
        f.write(b"\xab" * size)


# --------------------------------------------------------------------------
# create
# --------------------------------------------------------------------------


def test_create_named(berth):
    proc = berth.docker("volume", "create", "myvol")
    assert proc.stdout == "myvol\n"
    assert proc.stderr == ""
    assert os.path.isdir(berth.mountpoint("myvol"))
    [v] = inspect(berth, "myvol")
    assert v["Name"] == "myvol"
    assert v["Labels"] is None
    assert v["Options"] is None


def test_create_anonymous_prints_64_hex(berth):
    proc = berth.docker("volume", "create")
    name = proc.stdout.strip()
    assert HEX64.match(name), proc.stdout
    assert proc.stdout == name + "\n"
    [v] = inspect(berth, name)
    assert v["Labels"] == {ANON: ""}
    assert v["Mountpoint"] == berth.mountpoint(name)
    assert os.path.isdir(berth.mountpoint(name))


def test_create_with_labels(berth):
    berth.docker("volume", "create", "--label", "a=b", "--label", "flag", "--label", "k=v=w", "lv")
    [v] = inspect(berth, "lv")
    assert v["Labels"] == {"a": "b", "flag": "", "k": "v=w"}
    assert v["Options"] is None


def test_create_with_local_options(berth):
    proc = berth.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
                        "-o", "o=size=1m", "tv")
    assert proc.stdout == "tv\n"
    [v] = inspect(berth, "tv")
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert v["Driver"] == "local"
    assert v["Labels"] is None
    # Nothing is mounted until a container uses the volume.
    assert os.path.isdir(berth.mountpoint("tv"))


def test_create_is_idempotent(berth):
    berth.docker("volume", "create", "--label", "a=b", "same")
    [before] = inspect(berth, "same")
    proc = berth.docker("volume", "create", "same")
    assert proc.stdout == "same\n"
    proc = berth.docker("volume", "create", "-d", "local", "--label", "a=other", "same")
    assert proc.stdout == "same\n"
    [after] = inspect(berth, "same")
    assert after == before  # stored labels kept, new ones ignored (as Docker)


def test_create_invalid_name(berth):
    proc = berth.docker("volume", "create", "a/b", check=False)
    assert proc.returncode == 1
    assert proc.stderr == (
        'Error response from daemon: create a/b: "a/b" includes invalid characters for a local '
        'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a '
        "host directory, use absolute path\n")
    assert proc.stdout == ""
    assert berth.volume_dirs() == set()


# --------------------------------------------------------------------------
# ls
# --------------------------------------------------------------------------


@pytest.fixture
def populated(berth):
    """alpha (plain), beta (a=b), gamma (a=c, x), tv (options), one anonymous."""
    berth.docker("volume", "create", "alpha")
    berth.docker("volume", "create", "--label", "a=b", "beta")
    berth.docker("volume", "create", "--label", "a=c", "--label", "x", "gamma")
    berth.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "tv")
    anon = berth.docker("volume", "create").stdout.strip()
    assert HEX64.match(anon)
    return berth, anon


def ls_q(berth, *filters, **kw):
    args = ["volume", "ls", "-q"]
    for f in filters:
        args += ["--filter", f]
    return names(berth.docker(*args, **kw).stdout)


def test_ls_table_and_quiet(populated):
    berth, anon = populated
    # The CLI sorts names naturally; the anonymous name is hex so it sorts
    # before names starting with a letter after 'f'.
    out = berth.docker("volume", "ls").stdout.splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"]
    rows = [line.split() for line in out[1:]]
    assert all(r[0] == "local" for r in rows)
    assert {r[1] for r in rows} == {"alpha", "beta", "gamma", "tv", anon}
    assert len(rows) == 5
    q = ls_q(berth)
    assert sorted(q) == sorted(["alpha", "beta", "gamma", "tv", anon])
    assert q.index("alpha") < q.index("beta") < q.index("gamma") < q.index("tv")


@pytest.mark.parametrize("flt, expect", [
    ("dangling=true", {"alpha", "beta", "gamma", "tv", "@anon"}),
    ("dangling=1", {"alpha", "beta", "gamma", "tv", "@anon"}),
    ("dangling=false", set()),
    ("dangling=0", set()),
    ("driver=local", {"alpha", "beta", "gamma", "tv", "@anon"}),
    ("driver=nope", set()),
    ("label=a", {"beta", "gamma"}),
    ("label=a=b", {"beta"}),
    ("label=x", {"gamma"}),
    ("label=" + ANON, {"@anon"}),
    ("name=^al", {"alpha"}),
    ("name=mm", {"gamma"}),
    ("name=^(beta|tv)$", {"beta", "tv"}),
    ("name=zzz", set()),
    # An invalid regular expression matches nothing (moby skips it) and is
    # not an error.
    ("name=[", set()),
    ("name=(", set()),
])
def test_ls_filters(populated, flt, expect):
    berth, anon = populated
    expect = {anon if e == "@anon" else e for e in expect}
    assert set(ls_q(berth, flt)) == expect


def test_ls_filters_combined(populated):
    berth, _ = populated
    # Several label filters are ANDed; several name filters are ORed.
    assert ls_q(berth, "label=a", "label=x") == ["gamma"]
    assert set(ls_q(berth, "name=alpha", "name=tv")) == {"alpha", "tv"}
    assert ls_q(berth, "label=a", "name=bet") == ["beta"]


def test_ls_bad_filter(populated):
    berth, _ = populated
    proc = berth.docker("volume", "ls", "--filter", "colour=x", check=False)
    assert proc.returncode == 1
    assert proc.stderr == "Error response from daemon: invalid filter 'colour'\n"
    proc = berth.docker("volume", "ls", "--filter", "dangling=maybe", check=False)
    assert proc.returncode == 1
    assert proc.stderr == "Error response from daemon: invalid filter 'dangling=[maybe]'\n"


def test_ls_format_json(populated):
    berth, anon = populated
    out = berth.docker("volume", "ls", "--format", "json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line]
    by_name = {r["Name"]: r for r in rows}
    assert set(by_name) == {"alpha", "beta", "gamma", "tv", anon}
    for name, r in by_name.items():
        assert r["Driver"] == "local"
        assert r["Scope"] == "local"
        assert r["Mountpoint"] == berth.mountpoint(name)
    assert by_name["alpha"]["Labels"] == ""
    assert by_name["beta"]["Labels"] == "a=b"
    assert sorted(by_name["gamma"]["Labels"].split(",")) == ["a=c", "x="]
    assert by_name[anon]["Labels"] == ANON + "="


# --------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------


def test_inspect_fields(berth):
    berth.docker("volume", "create", "--label", "team=db", "-o", "type=tmpfs",
                 "-o", "device=tmpfs", "-o", "o=size=1m", "iv")
    berth.docker("volume", "create", "plain")
    [v, p] = inspect(berth, "iv", "plain")
    assert v["Name"] == "iv"
    assert v["Driver"] == "local"
    assert v["Mountpoint"] == os.path.join(berth.root, "volumes", "iv", "_data")
    assert v["Scope"] == "local"
    assert v["Labels"] == {"team": "db"}
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert RFC3339_SECONDS.match(v["CreatedAt"]), v["CreatedAt"]
    created = dt.datetime.fromisoformat(v["CreatedAt"].replace("Z", "+00:00"))
    assert abs(dt.datetime.now(dt.timezone.utc) - created) < dt.timedelta(days=1)
    assert set(v) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    assert p["Labels"] is None and p["Options"] is None
    assert p["Mountpoint"] == os.path.join(berth.root, "volumes", "plain", "_data")

    # The raw API shape the CLI decoded: null (not {}) when empty, no Status
    # for local volumes, no UsageData outside /system/df.
    status, raw = berth.api("GET", "/volumes/plain")
    assert status == 200
    assert set(raw) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    assert raw["Labels"] is None and raw["Options"] is None


def test_inspect_format(berth):
    berth.docker("volume", "create", "--label", "a=b", "fv")
    out = berth.docker("volume", "inspect", "--format",
                       "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}} {{.Mountpoint}}", "fv").stdout
    assert out == f"fv local local map[a:b] {berth.mountpoint('fv')}\n"


def test_inspect_missing(berth):
    berth.docker("volume", "create", "here")
    proc = berth.docker("volume", "inspect", "nosuch", check=False)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "[]"
    assert proc.stderr == "Error response from daemon: get nosuch: no such volume\n"
    proc = berth.docker("volume", "inspect", "here", "nosuch", check=False)
    assert proc.returncode == 1
    assert [v["Name"] for v in json.loads(proc.stdout)] == ["here"]


# --------------------------------------------------------------------------
# rm
# --------------------------------------------------------------------------


def test_rm_unknown(berth):
    proc = berth.docker("volume", "rm", "nosuch", check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == "Error response from daemon: get nosuch: no such volume\n"


def test_rm_force_unknown_is_ok(berth):
    proc = berth.docker("volume", "rm", "-f", "nosuch")
    assert proc.stdout == "nosuch\n"


def test_rm_removes_metadata_and_disk(berth):
    berth.docker("volume", "create", "gone")
    write_file(os.path.join(berth.mountpoint("gone"), "f"), 1000)
    proc = berth.docker("volume", "rm", "gone")
    assert proc.stdout == "gone\n"
    assert "gone" not in berth.volume_dirs()
    assert ls_q(berth) == []


def test_rm_several_with_errors(berth):
    berth.docker("volume", "create", "r1")
    berth.docker("volume", "create", "r2")
    proc = berth.docker("volume", "rm", "r1", "nosuch", "r2", check=False)
    assert proc.returncode == 1
    assert proc.stdout == "r1\nr2\n"
    assert proc.stderr == "Error response from daemon: get nosuch: no such volume\n"
    assert berth.volume_dirs() == set()


# --------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------


@pytest.fixture
def prune_set(berth):
    """named (plain), labelled (a=b), opts (driver options), two anonymous
    volumes, one holding 1 MiB."""
    berth.docker("volume", "create", "named")
    berth.docker("volume", "create", "--label", "a=b", "labelled")
    berth.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "opts")
    anon1 = berth.docker("volume", "create").stdout.strip()
    anon2 = berth.docker("volume", "create").stdout.strip()
    write_file(os.path.join(berth.mountpoint(anon1), "blob"), MIB)
    return berth, anon1, anon2


def parse_prune(out: str):
    """(deleted names, reclaimed text) from `docker volume prune` output."""
    lines = out.splitlines()
    assert lines[-1].startswith("Total reclaimed space: "), out
    reclaimed = lines[-1][len("Total reclaimed space: "):]
    deleted = []
    if lines[0] == "Deleted Volumes:":
        deleted = lines[1:lines.index("")]
    else:
        assert len(lines) == 1, out
    return deleted, reclaimed


def test_prune_newest_api_removes_only_anonymous(prune_set):
    berth, anon1, anon2 = prune_set
    proc = berth.docker("volume", "prune", "-f")
    deleted, reclaimed = parse_prune(proc.stdout)
    assert sorted(deleted) == sorted([anon1, anon2])
    assert reclaimed == "1.049MB"
    assert set(ls_q(berth)) == {"named", "labelled", "opts"}
    assert berth.volume_dirs() == {"named", "labelled", "opts"}

    # --all: every unused local volume without driver options.
    proc = berth.docker("volume", "prune", "-f", "-a")
    deleted, reclaimed = parse_prune(proc.stdout)
    assert sorted(deleted) == ["labelled", "named"]
    assert reclaimed == "0B"
    assert ls_q(berth) == ["opts"]
    assert berth.volume_dirs() == {"opts"}

    # Nothing left to prune.
    proc = berth.docker("volume", "prune", "-f", "-a")
    assert proc.stdout == "Total reclaimed space: 0B\n"


def test_prune_all_with_label_filter(prune_set):
    berth, anon1, anon2 = prune_set
    proc = berth.docker("volume", "prune", "-f", "-a", "--filter", "label=a=b")
    assert parse_prune(proc.stdout) == (["labelled"], "0B")
    proc = berth.docker("volume", "prune", "-f", "-a", "--filter", "label!=a")
    deleted, _ = parse_prune(proc.stdout)
    assert sorted(deleted) == sorted(["named", anon1, anon2])
    assert ls_q(berth) == ["opts"]


def test_prune_prompt_says_anonymous(prune_set):
    berth, anon1, anon2 = prune_set
    proc = berth.docker("volume", "prune", input="n\n")
    assert "WARNING! This will remove anonymous local volumes not used by at least one container." in proc.stdout
    assert set(ls_q(berth)) == {"named", "labelled", "opts", anon1, anon2}


def test_prune_api_1_41_removes_named_volumes_too(prune_set):
    berth, anon1, anon2 = prune_set
    proc = berth.docker("volume", "prune", "-f", api_version="1.41")
    deleted, reclaimed = parse_prune(proc.stdout)
    assert sorted(deleted) == sorted(["named", "labelled", anon1, anon2])
    assert reclaimed == "1.049MB"
    assert ls_q(berth) == ["opts"]
    assert berth.volume_dirs() == {"opts"}


def test_prune_api_1_41_accepts_all_true(prune_set):
    """Below 1.42 moby adds all=true itself; a client's own all=true is the
    same value of a set, not a second value (moby 28)."""
    berth, anon1, anon2 = prune_set
    proc = berth.docker("volume", "prune", "-f", "--filter", "all=true", "--filter", "label=a=b",
                        api_version="1.41")
    assert parse_prune(proc.stdout) == (["labelled"], "0B")
    proc = berth.docker("volume", "prune", "-f", "--filter", "all=false", api_version="1.41",
                        check=False)
    assert proc.returncode == 1
    assert proc.stderr in (
        "Error response from daemon: invalid filter 'all=[false true]': only one value is expected\n",
        "Error response from daemon: invalid filter 'all=[true false]': only one value is expected\n")
    assert set(ls_q(berth)) == {"named", "opts", anon1, anon2}


def test_prune_bad_filter_removes_nothing(prune_set):
    berth, anon1, anon2 = prune_set
    proc = berth.docker("volume", "prune", "-f", "--filter", "colour=x", check=False)
    assert proc.returncode == 1
    assert proc.stderr == "Error response from daemon: invalid filter 'colour'\n"
    assert set(ls_q(berth)) == {"named", "labelled", "opts", anon1, anon2}


# --------------------------------------------------------------------------
# system df
# --------------------------------------------------------------------------


def test_system_df_verbose_lists_volume_sizes(berth):
    berth.docker("volume", "create", "big")
    berth.docker("volume", "create", "small")
    berth.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "withopts")
    write_file(os.path.join(berth.mountpoint("big"), "blob"), MIB)
    write_file(os.path.join(berth.mountpoint("small"), "tiny"), 2000)

    out = berth.docker("system", "df", "-v").stdout
    assert "Local Volumes space usage:" in out
    section = out.split("Local Volumes space usage:")[1].split("Build cache usage")[0]
    rows = [line.split() for line in section.strip().splitlines()]
    assert rows[0] == ["VOLUME", "NAME", "LINKS", "SIZE"]
    table = {r[0]: (r[1], r[2]) for r in rows[1:]}
    assert table["big"] == ("0", "1.049MB")
    assert table["small"] == ("0", "2kB")
    # As Docker: volumes with driver options are not measured by df.
    assert "withopts" not in table

    out = berth.docker("system", "df").stdout
    [row] = [line for line in out.splitlines() if line.startswith("Local Volumes")]
    # TYPE TOTAL ACTIVE SIZE RECLAIMABLE
    assert row.split()[2:5] == ["2", "0", "1.051MB"], row
