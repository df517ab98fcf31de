"""A real directory (SQLite under tmp), the demo catalogue, the demo policy bundle and the grants
service — no mocks: the same objects the gateway builds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ztgw.gateway.catalogue import Catalogue, Dataset
from ztgw.gateway.demo.realm import DEMO_DATASETS, demo_bundle_dir, demo_citizen_record
from ztgw.gateway.grants import Grants
from ztgw.gateway.identity.directory import Directory
from ztgw.policies.bundle import load_bundle
from ztgw.policies.domain import Classification, Subject
from ztgw.policies.engine import CompiledPolicy, PolicyEngine

POLICE, MARKET = "市公安局", "市市场监督管理局"


@dataclass
class World:
    directory: Directory
    catalogue: Catalogue
    grants: Grants
    engine: PolicyEngine
    events: list[dict[str, Any]] = field(default_factory=list)
    citizen_key: str = ""

    @property
    def service(self) -> Any:
        return self.grants.service

    def dataset(self, name: str) -> Dataset:
        d = self.catalogue.get(name)
        assert d is not None
        return d


def approver(name: str, department: str) -> Subject:
    return Subject(id=f"user:{name}", kind="user", name=name, client_id="ztgw-console",
                   roles=frozenset({"data-approver"}), department=department,
                   clearance=Classification.CORE)


def app(client_id: str) -> Subject:
    return Subject(id=f"client:{client_id}", kind="client", name=client_id, client_id=client_id,
                   department="城市规划研究院")


def citizen(name: str, id_number: str) -> Subject:
    return Subject(id=f"user:{name}", kind="user", name=name, client_id="ztgw-console",
                   roles=frozenset({"citizen"}), attributes={"id_number": id_number})


def make_world(tmp_path: Path, directory: Directory | None = None) -> World:
    """The world on ``directory`` (default: the SQLite file of the home ``tmp_path``)."""
    directory = directory or Directory.open(tmp_path / "ztgw.db")
    catalogue = Catalogue(directory)
    for d in DEMO_DATASETS:
        catalogue.put(Dataset(dataset=d.dataset, title=d.title, route_prefix=d.route_prefix,
                              upstream_url="http://127.0.0.1:9", owner_department=d.owner_department,
                              fields=d.fields, key_field=d.key_field, filter_fields=d.filter_fields,
                              pi=d.pi, subject_field=d.subject_field))
    events: list[dict[str, Any]] = []
    grants = Grants(directory, catalogue, tmp_path / "keys", events.append)
    engine = PolicyEngine(CompiledPolicy(load_bundle(demo_bundle_dir())))
    return World(directory, catalogue, grants, engine, events,
                 citizen_key=demo_citizen_record()["id_number"])


@pytest.fixture
def world(tmp_path: Path, directory_opener: Callable[[], Directory]) -> World:
    """On the backend ZTGW_TEST_BACKEND selects (tests/conftest.py)."""
    return make_world(tmp_path, directory_opener())
