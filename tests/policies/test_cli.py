"""`ztgw policy test|explain|who-can|lint` without a running gateway."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from ztgw.gateway.demo.realm import demo_bundle_dir
from ztgw.policies.cli import app

runner = CliRunner()


def test_policy_test_passes_on_the_demo_bundle() -> None:
    out = runner.invoke(app, ["test", str(demo_bundle_dir()), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["failed"] == 0 and doc["passed"] >= 6


def test_policy_test_fails_with_exit_1_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(f"""
bundle: {demo_bundle_dir()}
cases:
  - name: wrong expectation
    subject: {{id: client:demo-denied, roles: [population-analyst, suspended]}}
    resource: population.persons
    expect: {{effect: allow}}
  - name: right expectation
    subject: {{id: client:x, roles: [population-analyst]}}
    resource: population.persons
    expect:
      effect: allow
      no_obligations: [row_filter]
      obligations: [{{type: mask, fields: {{mobile: {{strategy: keep}}}}}}]
""", encoding="utf-8")
    out = runner.invoke(app, ["test", str(tmp_path)])
    assert out.exit_code == 1
    assert "FAIL  t.yaml: wrong expectation" in out.stdout and "deny-suspended" in out.stdout
    assert "PASS  t.yaml: right expectation" in out.stdout


def test_policy_test_on_bad_input_exits_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["test", str(tmp_path)]).exit_code == 2  # no test files
    (tmp_path / "t.yaml").write_text("cases: 3\n", encoding="utf-8")
    assert runner.invoke(app, ["test", str(tmp_path)]).exit_code == 2


def test_explain_json_shows_rules_and_failed_conditions(tmp_path: Path) -> None:
    b = tmp_path / "b"
    shutil.copytree(demo_bundle_dir(), b)
    text = (b / "policy.yaml").read_text(encoding="utf-8")
    (b / "policy.yaml").write_text(text.replace(
        "    subjects: [role:population-officer]\n",
        "    subjects: [role:population-officer]\n    when: {zones: [gov-intranet]}\n", 1),
        encoding="utf-8")
    args = ["explain", "--subject", "client:p", "--role", "population-officer", "--resource",
            "population.persons", "--bundle", str(b), "--json"]
    doc = json.loads(runner.invoke(app, args).stdout)
    assert doc["decision"]["effect"] == "deny"
    trace = {t["rule_id"]: t for t in doc["rules"]}["population-officer-read"]
    assert trace["subject_matched"] and trace["failed_conditions"] == ["network zone in ['gov-intranet']"]
    doc = json.loads(runner.invoke(app, [*args, "--env", "zone=gov-intranet"]).stdout)
    assert doc["decision"]["rule_id"] == "population-officer-read"
    assert runner.invoke(app, [*args, "--env", "zone"]).exit_code == 2


def test_who_can_and_lint() -> None:
    out = runner.invoke(app, ["who-can", "population.persons", "--bundle", str(demo_bundle_dir()),
                              "--json"])
    grants = json.loads(out.stdout)["grants"]
    subjects = {g["subject"] for g in grants}
    # "*" only through an owner's grant or a citizen's consent (issue 6), never unconditionally
    assert subjects == {"role:population-analyst", "role:population-officer", "*"}
    assert all(g["conditions"] for g in grants if g["subject"] == "*")
    out = runner.invoke(app, ["lint", str(demo_bundle_dir()), "--json"])
    assert json.loads(out.stdout)["deny_rules"] == 1
