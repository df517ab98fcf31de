"""deploy/compose/elasticsearch.yaml: documentation-tested (images cannot be pulled here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"


def test_compose_runs_elasticsearch_kibana_and_setup() -> None:
    doc = yaml.safe_load((COMPOSE / "elasticsearch.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"elasticsearch", "es-setup", "kibana"}
    assert all(s["profiles"] == ["siem"] for s in services.values())
    es = services["elasticsearch"]
    assert re.search(r"elasticsearch:\$\{ELASTIC_VERSION:-9\.", es["image"])  # client 9 ↔ server 9
    assert "xpack.security.enabled=true" in es["environment"]
    assert all(p.startswith("127.0.0.1:") for p in es["ports"] + services["kibana"]["ports"])
    assert "healthcheck" in es and "healthcheck" in services["kibana"]
    assert services["es-setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert (services["kibana"]["depends_on"]["es-setup"]["condition"]
            == "service_completed_successfully")


def test_setup_sends_the_shipped_assets_and_keeps_the_key_out_of_logs() -> None:
    script = (COMPOSE / "es-setup.sh").read_text()
    for name in ("ilm-policy.json", "ingest-pipeline.json", "component-template.json",
                 "index-template.json"):
        assert f"@$D/{name}" in script and (ROOT / "deploy" / "elasticsearch" / name).exists()
    assert '"create_doc"' in script and '"delete"' not in script and '"index"' not in script
    assert "echo \"$KEY\"" not in script and "${KEY}\"" not in script
