"""The dataset catalogue: which route prefix serves which dataset, from which upstream,
owned by which department, with which classification per field (GB/T 43697: 一般/重要/核心)
and which personal-information flag per field (PIPL art. 4 / art. 28, GB/T 35273: personal /
sensitive personal information).
"""

from __future__ import annotations

import enum
import json
import re
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
    # issue 6: personal-information flag per field (JSON name -> "personal"|"sensitive"), and
    # the field that names the data subject of a record (consent filters on it)
    sa.Column("pi_fields", sa.Text, nullable=False, default="{}"),
    sa.Column("subject_field", sa.String(128)),
)


class PersonalInfo(enum.StrEnum):
    """Personal-information flag of a field (PIPL art. 4, art. 28; GB/T 35273-2020 3.1, 3.2)."""

    NONE = "none"
    PERSONAL = "personal"  # 个人信息
    SENSITIVE = "sensitive"  # 敏感个人信息

    @property
    def label(self) -> str:
        return {"none": "非个人信息", "personal": "个人信息", "sensitive": "敏感个人信息"}[self.value]

    @classmethod
    def parse(cls, value: str) -> PersonalInfo:
        text = value.strip().lower()
        for member in cls:
            if text in (member.value, member.label):
                return member
        if text in ("sensitive-personal", "sensitive_personal", "spi"):
            return cls.SENSITIVE
        raise ValueError(f"unknown personal-information flag {value!r}; use none/personal/sensitive")


DATASET_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,126}$")
ROUTE_PREFIX = re.compile(r"^/api/[A-Za-z0-9._~/-]{1,200}$")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_FIELDS = 256


class CatalogueError(ValueError):
    """A dataset registration that is not valid (bad id, prefix, field name, flag)."""


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
    # personal-information flag per field; a field not listed is not personal information
    pi: dict[str, PersonalInfo] = field(default_factory=dict)
    subject_field: str | None = None  # the field naming the data subject (consent filters on it)
    # derived once (it is read on every data-plane request): as sensitive as its most
    # sensitive field
    classification: Classification = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classification",
                           max(self.fields.values(), default=Classification.GENERAL))


class Catalogue:
    def __init__(self, directory: Directory) -> None:
        self.engine = directory.engine
        from .migrations import ensure_current

        ensure_current(self.engine)  # the schema by alembic (gateway/migrations), issue 11

    @staticmethod
    def validate(d: Dataset) -> None:
        """Refuse a registration the gateway could not enforce (raises :class:`CatalogueError`)."""
        if not DATASET_ID.match(d.dataset) or d.dataset.startswith("ztgw."):
            raise CatalogueError(f"dataset id {d.dataset!r}: lower-case letters, digits and ._-, "
                                 "not starting with 'ztgw.'")
        if not ROUTE_PREFIX.match(d.route_prefix.rstrip("/")) or ".." in d.route_prefix:
            raise CatalogueError(f"route prefix {d.route_prefix!r} must be a path under /api/")
        if not d.upstream_url.startswith(("http://", "https://")):
            raise CatalogueError("the upstream URL must be http:// or https://")
        if not d.fields or len(d.fields) > MAX_FIELDS:
            raise CatalogueError(f"a dataset has 1..{MAX_FIELDS} classified fields")
        for name in (*d.fields, *d.pi, *d.filter_fields):
            if not FIELD_NAME.match(name):
                raise CatalogueError(f"field name {name!r} is not an identifier")
        unknown = (set(d.pi) | set(d.filter_fields)) - set(d.fields)
        for name in (d.key_field, d.subject_field):
            if name is not None and name not in d.fields:
                unknown.add(name)
        if unknown:
            raise CatalogueError(f"fields {sorted(unknown)} are not in the dataset's schema")

    def register(self, d: Dataset) -> None:
        """Register (or replace) a dataset after validating it."""
        self.validate(d)
        self.put(d)

    def get(self, dataset: str) -> Dataset | None:
        return next((d for d in self.all() if d.dataset == dataset), None)

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
            "pi_fields": json.dumps({k: v.value for k, v in d.pi.items() if v != PersonalInfo.NONE}),
            "subject_field": d.subject_field,
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
                    pi={k: PersonalInfo(v) for k, v in json.loads(r["pi_fields"] or "{}").items()},
                    subject_field=r["subject_field"],
                )
                for r in rows
            ]
