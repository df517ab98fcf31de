"""Typed settings the composition root hands to the audit package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AuditSettings:
    db_path: Path
    synchronous: str = "NORMAL"


class ProvidesAuditSettings(Protocol):
    def audit_settings(self) -> AuditSettings: ...
