"""Must-show 2 (docker-py part): docker-py drives berth unchanged, with the
same assertions docker-py's own integration tests make
(tests/integration/api_volume_test.py, models_volumes_test.py)."""

from __future__ import annotations

import time

import docker
import docker.errors
import pytest

from conftest import HEX64


@pytest.fixture
def client(berth):
    c = docker.DockerClient(base_url=berth.host, version="auto", timeout=30)
    try:
        yield c
    finally:
        c.close()


def test_version_negotiation(client):
    assert client.api.api_version == "1.45"
    v = client.version()
    assert v["ApiVersion"] == "1.45"
    assert v["MinAPIVersion"] == "1.24"
    assert client.ping() is True


def test_create_equals_inspect_equals_list_item(client):
    result = client.api.create_volume("dockerpytest_1")
    assert result["Name"] == "dockerpytest_1"
    assert result["Driver"] == "local"
    # Full dict equality, as docker-py's own tests assert.
    assert client.api.inspect_volume("dockerpytest_1") == result
    listed = client.api.volumes()["Volumes"]
    assert result in listed
    assert [v for v in listed if v["Name"] == "dockerpytest_1"] == [result]


def test_create_with_labels_and_options_equal_everywhere(client):
    result = client.api.create_volume(
        "dockerpytest_opts", driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
        labels={"a": "b", "empty": ""})
    assert result["Labels"] == {"a": "b", "empty": ""}
    assert result["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert client.api.inspect_volume("dockerpytest_opts") == result
    assert result in client.api.volumes()["Volumes"]


def test_list_response_shape(client, berth):
    status, body = berth.api("GET", "/volumes")
    assert status == 200
    assert body == {"Volumes": [], "Warnings": None}
    assert client.api.volumes() == {"Volumes": [], "Warnings": None}
    assert client.volumes.list() == []


def test_labels_round_trip(client):
    vol = client.volumes.create("dockerpytest_labels", labels={"labelkey": "labelvalue"})
    assert vol.attrs["Labels"] == {"labelkey": "labelvalue"}
    again = client.volumes.get("dockerpytest_labels")
    assert again.attrs["Labels"] == {"labelkey": "labelvalue"}
    assert again == vol
    vol.reload()
    assert vol.attrs["Labels"] == {"labelkey": "labelvalue"}


def test_anonymous_volume_and_prune(client):
    result = client.api.create_volume()  # docker-py sends {} -> anonymous
    name = result["Name"]
    assert HEX64.match(name)
    assert result["Labels"] == {"com.docker.volume.anonymous": ""}
    client.api.create_volume("dockerpytest_named")
    pruned = client.api.prune_volumes()
    assert name in pruned["VolumesDeleted"]
    assert pruned["VolumesDeleted"] == [name]  # API 1.45: anonymous only
    assert pruned["SpaceReclaimed"] == 0
    assert [v.name for v in client.volumes.list()] == ["dockerpytest_named"]
    # Nothing more to prune: an empty list, never null.
    assert client.api.prune_volumes() == {"VolumesDeleted": [], "SpaceReclaimed": 0}


def test_prune_all_filter(client):
    client.api.create_volume("dockerpytest_a", labels={"keep": "no"})
    client.api.create_volume("dockerpytest_b", labels={"keep": "yes"})
    pruned = client.api.prune_volumes(filters={"all": True, "label": ["keep=no"]})
    assert pruned["VolumesDeleted"] == ["dockerpytest_a"]
    assert [v.name for v in client.volumes.list()] == ["dockerpytest_b"]


def test_not_found(client):
    with pytest.raises(docker.errors.NotFound) as e:
        client.api.inspect_volume("dockerpytest_nosuch")
    assert e.value.status_code == 404
    assert "no such volume" in str(e.value)
    with pytest.raises(docker.errors.NotFound):
        client.api.remove_volume("dockerpytest_nosuch")
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("dockerpytest_nosuch")


def test_remove(client):
    vol = client.volumes.create("dockerpytest_rm")
    assert vol in client.volumes.list()
    vol.remove()
    assert vol not in client.volumes.list()
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_volume("dockerpytest_rm")


def test_unknown_driver_fails_fast(client):
    start = time.monotonic()
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_volume("dockerpytest_nodriver", driver="this-plugin-does-not-exist")
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, f"unknown driver took {elapsed:.1f}s"
    assert 400 <= e.value.status_code < 600
    assert e.value.explanation == (
        "create dockerpytest_nodriver: error looking up volume plugin "
        'this-plugin-does-not-exist: plugin "this-plugin-does-not-exist" not found')
    assert client.volumes.list() == []


def test_list_filters_name(client):
    client.volumes.create("dockerpytest_1")
    client.volumes.create("other_vol")
    got = [v.name for v in client.volumes.list(filters={"name": "dockerpytest_"})]
    assert got == ["dockerpytest_1"]
    assert client.volumes.list(filters={"name": "foobar"}) == []
    # The legacy list form with a boolean rendered as docker-py renders it.
    got = {v.name for v in client.volumes.list(filters={"dangling": True})}
    assert got == {"dockerpytest_1", "other_vol"}
    assert client.volumes.list(filters={"dangling": False}) == []


def test_bad_filter_is_api_error(client):
    with pytest.raises(docker.errors.APIError) as e:
        client.volumes.list(filters={"colour": "x"})
    assert e.value.status_code == 400
    assert e.value.explanation == "invalid filter 'colour'"
