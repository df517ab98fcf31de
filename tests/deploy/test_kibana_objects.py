"""deploy/kibana/ztgw-saved-objects.ndjson: valid NDJSON for Kibana's saved-objects import, every
reference resolves inside the file, the index pattern matches the audit data streams, every
ztgw.* field a query or chart uses is mapped by deploy/elasticsearch, and the four dashboards of
issue 11 are there."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NDJSON = ROOT / "deploy" / "kibana" / "ztgw-saved-objects.ndjson"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    lines = NDJSON.read_text(encoding="utf-8").splitlines()
    assert lines and all(line.strip() for line in lines)
    return [json.loads(line) for line in lines]


def _mapped_ztgw_fields() -> set[str]:
    doc = json.loads((ROOT / "deploy" / "elasticsearch" / "component-template.json").read_text())

    def walk(props: dict[str, Any], prefix: str) -> set[str]:
        out = set()
        for name, spec in props.items():
            path = f"{prefix}{name}"
            out.add(path)
            if "properties" in spec:
                out |= walk(spec["properties"], path + ".")
        return out

    return walk(doc["template"]["mappings"]["properties"], "")


def test_every_object_is_well_formed_and_unique(objects: list[dict[str, Any]]) -> None:
    ids = [(o["type"], o["id"]) for o in objects]
    assert len(ids) == len(set(ids))
    for o in objects:
        assert o["type"] in {"index-pattern", "search", "visualization", "dashboard"}
        assert o["attributes"]["title"]
        for key in ("visState", "panelsJSON", "optionsJSON", "uiStateJSON"):
            if key in o["attributes"]:
                json.loads(o["attributes"][key])
        meta = o["attributes"].get("kibanaSavedObjectMeta")
        if meta:
            json.loads(meta["searchSourceJSON"])


def test_references_resolve_and_point_at_the_audit_streams(objects: list[dict[str, Any]]) -> None:
    present = {(o["type"], o["id"]) for o in objects}
    [pattern] = [o for o in objects if o["type"] == "index-pattern"]
    assert pattern["attributes"]["title"] == "logs-ztgw.*"  # the data streams of the index template
    template = json.loads((ROOT / "deploy" / "elasticsearch" / "index-template.json").read_text())
    for stream in ("logs-ztgw.access-default", "logs-ztgw.auth-default", "logs-ztgw.alert-default"):
        assert any(fnmatch(stream, p) for p in template["index_patterns"])  # ES writes it …
        assert fnmatch(stream, pattern["attributes"]["title"])  # … and Kibana reads it
    for o in objects:
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in present, (o["id"], ref)
        if o["type"] == "dashboard":
            names = {r["name"] for r in o["references"]}
            panels = json.loads(o["attributes"]["panelsJSON"])
            assert panels and all(p["panelRefName"] in names for p in panels)


def test_the_four_dashboards(objects: list[dict[str, Any]]) -> None:
    titles = " | ".join(o["attributes"]["title"] for o in objects if o["type"] == "dashboard")
    for words in ("Authentication failures", "Data access by classification", "Alerts",
                  "Drill timeline"):
        assert words in titles, titles


def test_every_ztgw_field_used_is_mapped(objects: list[dict[str, Any]]) -> None:
    mapped = _mapped_ztgw_fields()
    used: set[str] = set()
    for o in objects:
        text = json.dumps(o["attributes"], ensure_ascii=False)
        used |= set(re.findall(r"ztgw\.[a-z_]+(?:\.[a-z_]+)*", text))
    used -= {"ztgw.auth", "ztgw.access", "ztgw.alert", "ztgw.response", "ztgw.iam"}  # datasets
    assert used, "no ztgw fields used?"
    assert used <= mapped, sorted(used - mapped)
