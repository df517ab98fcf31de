"""The grants store on a real PostgreSQL (portable SQL): two approvers, the primary key against
a second vote, revocation seen by a second replica's index through the change counter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scale.services import Postgres, ServiceMissing, start_postgres

from ztgw.gateway.catalogue import Catalogue, Dataset
from ztgw.gateway.demo.realm import DEMO_DATASETS
from ztgw.gateway.grants import Grants
from ztgw.gateway.grants.index import EntitlementIndex
from ztgw.gateway.grants.store import GrantStore
from ztgw.gateway.identity.directory import Directory
from ztgw.policies.conditions import GRANT_ATTRIBUTE

from .conftest import POLICE, app, approver


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    try:
        server = start_postgres()
    except ServiceMissing as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def test_grants_on_postgres(pg: Postgres, tmp_path: Path) -> None:
    url = pg.new_database()
    directory = Directory.open_url(url)
    catalogue = Catalogue(directory)
    for d in DEMO_DATASETS:
        catalogue.put(Dataset(dataset=d.dataset, title=d.title, route_prefix=d.route_prefix,
                              upstream_url="http://127.0.0.1:9", owner_department=d.owner_department,
                              fields=d.fields, key_field=d.key_field, pi=d.pi,
                              subject_field=d.subject_field))
    events: list[dict[str, object]] = []
    grants = Grants(directory, catalogue, tmp_path / "keys", events.append)
    replica = EntitlementIndex(GrantStore(Directory.open_url(url).engine))
    svc = grants.service
    r = svc.create_request(app("demo-research"), dataset="population.persons",
                           fields=["id_number", "name"], purpose="核对", days=3)
    assert r.required_approvals == 2
    svc.approve(approver("zhaolei", POLICE), r.id, "同意")
    assert not grants.store.record_approval(r.id, "user:zhaolei", "approve", "再次")
    done = svc.approve(approver("sunli", POLICE), r.id, "复核")
    assert done.status == "approved" and done.grant_id
    ds = catalogue.get("population.persons")
    assert ds is not None
    assert replica.poll_once()
    assert GRANT_ATTRIBUTE in replica.apply(app("demo-research"), ds).attributes
    svc.revoke(approver("zhaolei", POLICE), done.grant_id, "结束")
    assert replica.poll_once()
    assert GRANT_ATTRIBUTE not in replica.apply(app("demo-research"), ds).attributes
    assert [e["event"]["action"] for e in events][-1] == "grant-revoked"  # type: ignore[index]
