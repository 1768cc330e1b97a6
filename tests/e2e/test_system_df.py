"""`system df` and the size fields of the list calls, against a real dockerd
in the same run: the same busybox image imported into both, the same two
containers (one exited after writing 100 kB, one running), the same volume.
The docker CLI's summary rows must be identical; the JSON fields docker-py
and the CLI read must have the same values."""

from __future__ import annotations

import json
import re

import pytest

from busybox_image import import_busybox, remove_all_containers

API = "1.41"  # what Debian's dockerd 20.10 speaks


def setup_engine(daemon, tag: str) -> None:
    image = import_busybox(daemon, f"{tag}:v1")
    daemon.docker("tag", image, f"{tag}:v2", api_version=API)
    daemon.docker("run", "--name", f"{tag}-c1", "-v", f"{tag}-vol:/data", image, "sh", "-c",
                  "dd if=/dev/zero of=/big bs=1k count=100 2>/dev/null", api_version=API)
    daemon.docker("run", "-d", "--name", f"{tag}-c2", image, "sleep", "300", api_version=API)


@pytest.fixture
def engines(berth, dockerd):
    tag = "dfcmp"
    try:
        for d in (berth, dockerd):
            setup_engine(d, tag)
        yield berth, dockerd
    finally:
        for d in (berth, dockerd):
            d.docker("rm", "-f", f"{tag}-c1", f"{tag}-c2", api_version=API, check=False)
            d.docker("volume", "rm", "-f", f"{tag}-vol", api_version=API, check=False)
            d.docker("rmi", "-f", f"{tag}:v1", f"{tag}:v2", api_version=API, check=False)
        remove_all_containers(berth)


def summary_rows(daemon) -> list[dict]:
    out = daemon.docker("system", "df", "--format", "{{json .}}", api_version=API).stdout
    return [json.loads(line) for line in out.splitlines()]


def api(daemon, path):
    import conftest
    status, _, body = conftest.unix_http(daemon.sock, "GET", f"/v{API}{path}")
    assert status == 200, body
    return json.loads(body)


def test_summary_rows_match_dockerd(engines):
    berth, dockerd = engines
    assert summary_rows(berth) == summary_rows(dockerd)


def test_df_json_sizes_match_dockerd(engines):
    got = {}
    for d in engines:
        du = api(d, "/system/df")
        images = [i for i in du["Images"] if "dfcmp:v1" in (i["RepoTags"] or [])]
        containers = {c["Names"][0]: c for c in du["Containers"]}
        got[d] = {
            "LayersSize": du["LayersSize"],
            "image": {k: images[0][k] for k in ("Containers", "SharedSize", "Size", "VirtualSize")},
            "c1": {k: containers["/dfcmp-c1"].get(k) for k in ("SizeRw", "SizeRootFs", "State")},
            "c2": {k: containers["/dfcmp-c2"].get(k) for k in ("SizeRw", "SizeRootFs", "State")},
            "BuildCache": du["BuildCache"],
            "BuilderSize": du.get("BuilderSize"),
        }
    berth, dockerd = engines
    assert got[berth] == got[dockerd]
    assert got[berth]["c1"]["SizeRw"] == 102400 and got[berth]["c2"]["SizeRw"] is None


def test_list_sizes_match_dockerd(engines):
    got = {}
    for d in engines:
        containers = api(d, "/containers/json?all=1&size=1")
        plain = api(d, "/containers/json?all=1")
        images = api(d, "/images/json?shared-size=1")
        got[d] = (
            sorted((c["Names"][0], c.get("SizeRw"), c["SizeRootFs"]) for c in containers
                   if c["Names"][0].startswith("/dfcmp")),
            [("SizeRw" in c, "SizeRootFs" in c) for c in plain][:1],
            # shared-size is honoured from API 1.42 only: -1 here on both
            sorted((i["Size"], i["SharedSize"], i["Containers"]) for i in images
                   if "dfcmp:v1" in (i["RepoTags"] or [])),
        )
    berth, dockerd = engines
    assert got[berth] == got[dockerd]


def test_ps_size_column_matches_dockerd(engines):
    outs = []
    for d in engines:
        out = d.docker("ps", "-a", "-s", "--filter", "name=dfcmp", "--format",
                       "{{.Names}} {{.Size}}", api_version=API).stdout
        outs.append(sorted(out.splitlines()))
    assert outs[0] == outs[1]
    assert any("100kB" in line or "102kB" in line for line in outs[0]), outs[0]


def test_verbose_tables_match_dockerd(engines):
    def norm(text: str) -> list[str]:
        text = re.sub(r"\b[0-9a-f]{12}\b", "<id>", text)
        text = re.sub(r"(Less than a second|\d+ seconds?|About a minute) ago", "<ago>", text)
        text = re.sub(r"Up (Less than a second|\d+ seconds?|About a minute)", "Up <t>", text)
        text = re.sub(r"Exited \(0\) <ago>", "Exited (0) <ago>", text)
        return [re.sub(r"\s{2,}", "  ", line).strip() for line in text.splitlines()
                if line.strip() and not line.startswith(("CACHE ID",))]

    outs = []
    for d in engines:
        out = d.docker("system", "df", "-v", api_version=API).stdout
        outs.append([l for l in norm(out) if "dfcmp" in l or l.endswith(":") or l.isupper()
                     or "usage" in l])
    assert outs[0] == outs[1]


def test_berth_cli_df_shows_images_and_containers(engines):
    berth, _ = engines
    out = berth.berth_cli("system", "df").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["Images"][1:3] == ["1", "1"], out
    assert rows["Containers"][1:3] == ["2", "1"], out
    verbose = berth.berth_cli("system", "df", "-v").stdout
    assert "Images space usage:" in verbose and "dfcmp" in verbose
    assert re.search(r"dfcmp-c1\s*$", verbose, re.M), verbose
