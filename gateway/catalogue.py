"""The dataset catalogue: which route prefix serves which dataset, from which upstream,
owned by which department, with which classification per field (GB/T 43697: 一般/重要/核心).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from ztgw.policies.domain import Classification

from .identity.directory import Directory, metadata

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("dataset", sa.String(128), primary_key=True),
    sa.Column("title", sa.String(256), nullable=False),
    sa.Column("route_prefix", sa.String(256), nullable=False, unique=True),
    sa.Column("upstream_url", sa.String(512), nullable=False),
    sa.Column("owner_department", sa.String(256)),
    sa.Column("fields", sa.Text, nullable=False, default="{}"),
    sa.Column("key_field", sa.String(128)),
    sa.Column("filter_fields", sa.Text, nullable=False, default="[]"),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
)


@dataclass(frozen=True, slots=True)
class Dataset:
    dataset: str
    title: str
    route_prefix: str
    upstream_url: str
    owner_department: str | None = None
    fields: dict[str, Classification] = field(default_factory=dict)
    key_field: str | None = None
    # query parameters the upstream filters by (row-filter obligations are pushed down to them)
    filter_fields: frozenset[str] = frozenset()
    enabled: bool = True
    # derived once (it is read on every data-plane request): as sensitive as its most
    # sensitive field
    classification: Classification = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classification",
                           max(self.fields.values(), default=Classification.GENERAL))


class Catalogue:
    def __init__(self, directory: Directory) -> None:
        self.engine = directory.engine
        metadata.create_all(self.engine)
        self._upgrade()

    def _upgrade(self) -> None:
        """Add columns newer than the home's table (until alembic migrations land, issue 11)."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns("datasets")}
        if "filter_fields" not in have:
            with self.engine.begin() as conn:
                conn.execute(sa.text(
                    "ALTER TABLE datasets ADD COLUMN filter_fields TEXT NOT NULL DEFAULT '[]'"))

    def put(self, d: Dataset) -> None:
        row = {
            "dataset": d.dataset,
            "title": d.title,
            "route_prefix": d.route_prefix.rstrip("/"),
            "upstream_url": d.upstream_url.rstrip("/"),
            "owner_department": d.owner_department,
            "fields": json.dumps({k: int(v) for k, v in d.fields.items()}),
            "key_field": d.key_field,
            "filter_fields": json.dumps(sorted(d.filter_fields)),
            "enabled": d.enabled,
        }
        with self.engine.begin() as conn:
            conn.execute(datasets.delete().where(datasets.c.dataset == d.dataset))
            conn.execute(datasets.insert().values(**row))

    def all(self) -> list[Dataset]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(datasets).order_by(datasets.c.dataset)).mappings()
            return [
                Dataset(
                    dataset=r["dataset"],
                    title=r["title"],
                    route_prefix=r["route_prefix"],
                    upstream_url=r["upstream_url"],
                    owner_department=r["owner_department"],
                    fields={k: Classification(v) for k, v in json.loads(r["fields"]).items()},
                    key_field=r["key_field"],
                    filter_fields=frozenset(json.loads(r["filter_fields"])),
                    enabled=bool(r["enabled"]),
                )
                for r in rows
            ]
