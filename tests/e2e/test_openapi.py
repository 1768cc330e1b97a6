"""The OpenAPI description of berth's own API (crates/berth-api/openapi.yaml)
is a valid OpenAPI document, and every `/berth/v1` route the daemon serves
is in it."""

from __future__ import annotations

import pathlib
import re

import yaml
from openapi_spec_validator import validate

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_openapi_file_is_valid_and_lists_every_berth_route():
    spec = yaml.safe_load((ROOT / "crates/berth-api/openapi.yaml").read_text())
    validate(spec)
    served = set(re.findall(r'"(/berth/v1/[^"]+)"',
                            (ROOT / "crates/berth-api/src/lib.rs").read_text()))
    assert served, "no /berth/v1 routes found in lib.rs"
    missing = sorted(served - set(spec["paths"]))
    assert not missing, f"routes served but not described: {missing}"
