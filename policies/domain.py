"""Shared domain types: who asks, for what, to do what, in which context, and the answer.

Frozen, slotted dataclasses imported by every layer above ``crypto``.  pydantic lives only at
the edges (HTTP bodies, settings); these are the types the core passes around.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Classification(enum.IntEnum):
    """Data classification per GB/T 43697-2024 (数据分类分级): ordered, so clearance compares."""

    GENERAL = 1  # 一般数据
    IMPORTANT = 2  # 重要数据
    CORE = 3  # 核心数据

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, value: str | int | Classification) -> Classification:
        """Accept the Chinese label, the English name (any case) or the level number."""
        if isinstance(value, Classification):
            return value
        if isinstance(value, int):
            return cls(value)
        text = value.strip()
        for member, label in _LABELS.items():
            if text == label:
                return member
        try:
            return cls[text.upper()]
        except KeyError:
            pass
        if text.isdigit():
            return cls(int(text))
        raise ValueError(f"unknown classification {value!r}; use 一般/重要/核心")


_LABELS = {
    Classification.GENERAL: "一般",
    Classification.IMPORTANT: "重要",
    Classification.CORE: "核心",
}


SubjectKind = Literal["client", "user"]


@dataclass(frozen=True, slots=True)
class Subject:
    """The principal a request is decided for (an application, or a user through one)."""

    id: str  # "client:<client_id>" or "user:<username>"
    kind: SubjectKind
    name: str
    client_id: str
    roles: frozenset[str] = frozenset()
    department: str | None = None
    clearance: Classification = Classification.GENERAL
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Resource:
    """A dataset (and optionally one record of it) as the catalogue describes it."""

    dataset: str  # e.g. "population.persons"
    classification: Classification
    owner_department: str | None = None
    record_id: str | None = None
    fields: Mapping[str, Classification] = field(default_factory=lambda: _EMPTY)
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # e.g. region


Action = Literal["read", "write", "delete", "admin"]


@dataclass(frozen=True, slots=True)
class Environment:
    """The context of one request."""

    time: datetime
    source_ip: str | None = None
    zone: str | None = None
    acr: str | None = None
    risk_score: int = 0
    device: str | None = None  # device posture as the edge reports it: managed, compliant, …
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Obligation:
    """Something the enforcement point must do for an allow to hold (mask, watermark, …)."""

    type: str
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    rule_id: str | None = None


Effect = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer, with the rule that decided it and the obligations attached."""

    effect: Effect
    reason: str
    rule_id: str | None = None
    ruleset: str | None = None
    ruleset_version: str | None = None
    obligations: tuple[Obligation, ...] = ()
    matched_rules: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"
