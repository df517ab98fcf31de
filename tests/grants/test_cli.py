"""``ztgw requests|grants|consent|datasets`` on a real home database (Typer's runner, no mocks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ztgw.gateway.cli import app as root
from ztgw.gateway.demo.data import get_dataset
from ztgw.gateway.identity.directory import Directory

from .conftest import World, app, citizen, make_world

runner = CliRunner()


@pytest.fixture
def world(tmp_path: Path, directory_opener: Callable[[], Directory],
          monkeypatch: pytest.MonkeyPatch) -> World:
    """On ZTGW_TEST_BACKEND's backend; the CLI (``--home tmp_path``) opens the same database:
    the home's SQLite file, or the PostgreSQL database through ``ZTGW_DIRECTORY_URL``."""
    w = make_world(tmp_path, directory_opener())
    if w.directory.engine.dialect.name != "sqlite":
        monkeypatch.setenv("ZTGW_DIRECTORY_URL",
                           w.directory.engine.url.render_as_string(hide_password=False))
    return w


def ztgw(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(root, ["--home", str(home), *args])
    return result.exit_code, result.output


def test_requests_are_filed_for_known_applications_only(world: World, tmp_path: Path) -> None:
    from ztgw.gateway.identity.directory import ClientRecord

    code, out = ztgw(tmp_path, "requests", "create", "--client", "demo-research", "--dataset",
                     "enterprise.companies", "--field", "uscc", "--purpose", "研究")
    assert code == 2 and "no enabled client" in out
    world.directory.put_client(ClientRecord(client_id="demo-research", name="研究院"))
    code, out = ztgw(tmp_path, "requests", "create", "--client", "demo-research", "--dataset",
                     "enterprise.companies", "--field", "uscc", "--field", "name", "--purpose",
                     "产业研究", "--json")
    assert code == 0, out
    rid = json.loads(out)["id"]
    code, out = ztgw(tmp_path, "requests", "approve", rid, "--as", "nobody", "--reason", "x")
    assert code == 2  # no such user
    code, out = ztgw(tmp_path, "grants", "list", "--json")
    assert json.loads(out)["grants"] == []


def test_cli_approver_goes_through_the_service_checks(world: World, tmp_path: Path) -> None:
    from ztgw.gateway.identity.directory import UserRecord

    world.directory.put_user(UserRecord(username="zhaolei", department="市公安局",
                                        roles=("data-approver",)))
    world.directory.put_user(UserRecord(username="zhouqiang", department="市市场监督管理局",
                                        roles=("data-approver",)))
    rid = world.service.create_request(app("demo-research"), dataset="enterprise.companies",
                                       fields=["name"], purpose="研究", days=3).id
    code, out = ztgw(tmp_path, "requests", "approve", rid, "--as", "zhaolei", "--reason", "越权")
    assert code == 2 and "access_denied" in out
    code, out = ztgw(tmp_path, "requests", "approve", rid, "--as", "zhouqiang", "--reason", "同意",
                     "--json")
    assert code == 0, out
    gid = json.loads(out)["grant_id"]
    code, out = ztgw(tmp_path, "grants", "narrow", gid, "--as", "zhouqiang", "--reason", "扩大",
                     "--field", "uscc")
    assert code == 2 and "would_widen" in out
    code, out = ztgw(tmp_path, "grants", "revoke", gid, "--as", "zhouqiang", "--reason", "结束")
    assert code == 0 and "revoked" in out


def test_consent_verify_exit_codes(world: World, tmp_path: Path) -> None:
    cr = world.service.request_consent(app("demo-fintech"), dataset="population.persons",
                                       purpose="核验", days=30)
    consent = world.service.give_consent(citizen("citizen", world.citizen_key), cr.id)
    good = tmp_path / "receipt.json"
    good.write_text(consent.receipt, encoding="utf-8")
    code, out = ztgw(tmp_path, "consent", "verify", str(good), "--json")
    assert code == 0 and json.loads(out)["receipt"]["consent_id"] == consent.id
    bad = tmp_path / "bad.json"
    bad.write_text(consent.receipt.replace("核验", "营销"), encoding="utf-8")
    code, out = ztgw(tmp_path, "consent", "verify", str(bad))
    assert code == 1
    code, _ = ztgw(tmp_path, "consent", "verify", str(good), "--key", str(tmp_path / "none.pem"))
    assert code == 2
    # another key does not verify it either
    other = tmp_path / "other.pub.pem"
    from ztgw.crypto.sm2 import generate_key

    other.write_bytes(generate_key().public_key().to_pem())
    code, _ = ztgw(tmp_path, "consent", "verify", str(good), "--key", str(other))
    assert code == 1


def test_pii_scan_proposes_and_the_owner_confirms(world: World, tmp_path: Path) -> None:
    from ztgw.gateway.identity.directory import UserRecord

    world.directory.put_user(UserRecord(username="zhouqiang", department="市市场监督管理局",
                                        roles=("data-approver",)))
    sample = tmp_path / "companies.json"
    sample.write_text(json.dumps(get_dataset("companies")[:200], ensure_ascii=False), encoding="utf-8")
    code, out = ztgw(tmp_path, "datasets", "propose", "enterprise.companies", str(sample), "--json")
    assert code == 0, out
    proposals = {p["field"]: p for p in json.loads(out)["proposals"]}
    assert proposals["legal_rep_id_number"]["proposed"] == {"classification": "核心",
                                                            "pi": "sensitive"}
    assert world.dataset("enterprise.companies").fields["legal_rep_id_number"].label == "重要"
    code, out = ztgw(tmp_path, "datasets", "propose", "enterprise.companies", str(sample),
                     "--apply", "--as", "zhouqiang")
    assert code == 0, out
    assert world.dataset("enterprise.companies").fields["legal_rep_id_number"].label == "核心"
