"""Typed settings the composition root hands to the audit package."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

FSYNC_POLICIES = ("always", "interval", "never")
SINK_NAMES = ("store", "jsonl", "elasticsearch")


@dataclass(frozen=True, slots=True)
class AuditSettings:
    db_path: Path
    synchronous: str = "NORMAL"
    # the spool: every event is appended here (and, per the fsync policy, synced) before the
    # future returned by emit() completes
    spool_dir: Path | None = None  # default: db_path.parent / "spool"
    fsync: str = "always"  # always: fsync each batch before acknowledging; interval; never
    fsync_interval: float = 0.2  # seconds, for fsync="interval"
    spool_quota_bytes: int = 2 * 1024**3  # beyond this emit() refuses (503), never drops
    spool_alert_ratio: float = 0.8  # alert when the spool holds this share of the quota
    segment_bytes: int = 64 * 1024**2
    batch_delay: float = 0.05  # max wait to fill a batch when no 重要/核心 event is waiting
    # tamper evidence
    keys_dir: Path | None = None  # default: db_path.parent.parent / "keys" (HOME/keys)
    checkpoint_path: Path | None = None  # default: db_path.parent / "checkpoints.jsonl"
    witness_dirs: tuple[Path, ...] = ()
    checkpoint_every: int = 10_000  # events
    checkpoint_seconds: float = 5.0
    checkpoint_events: bool = False  # also put each checkpoint in the trail (→ every sink, the SOC index)
    # shipping
    sinks: tuple[str, ...] = ("store",)
    jsonl_path: Path | None = None  # default: db_path.parent / "events.jsonl"
    es_url: str | None = None
    es_api_key: str | None = field(default=None, repr=False)
    es_ca_certs: Path | None = None
    es_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"audit fsync policy must be one of {FSYNC_POLICIES}")
        unknown = set(self.sinks) - set(SINK_NAMES)
        if unknown:
            raise ValueError(f"unknown audit sinks {sorted(unknown)}; known: {SINK_NAMES}")
        if "elasticsearch" in self.sinks and not self.es_url:
            raise ValueError("the elasticsearch audit sink needs an URL (ZTGW_AUDIT_ES_URL)")
        if self.spool_quota_bytes < 1024 * 1024:
            raise ValueError("the audit spool quota must be at least 1 MiB")

    @property
    def home_dir(self) -> Path:
        return self.db_path.parent

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or self.home_dir / "spool"

    @property
    def effective_keys_dir(self) -> Path:
        return self.keys_dir or self.home_dir.parent / "keys"

    @property
    def effective_checkpoint_path(self) -> Path:
        return self.checkpoint_path or self.home_dir / "checkpoints.jsonl"

    @property
    def effective_jsonl_path(self) -> Path:
        return self.jsonl_path or self.home_dir / "events.jsonl"


class ProvidesAuditSettings(Protocol):
    def audit_settings(self) -> AuditSettings: ...
