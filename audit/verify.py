"""``ztgw audit verify``: recompute the SM3 chain over the stored events and hold it against the
SM2-signed checkpoints (primary file and witnesses).

What each finding means (``kind``):

* ``missing`` — positions with no event: deleted events (or a gap left by an insertion trick);
* ``moved`` — an event recorded for position *p* is stored at another position: reordered,
  or renumbered to make room for an inserted event;
* ``altered`` — an event's content no longer hashes to its recorded chain value;
* ``unlinked`` — an event does not name the chain value of the event before it: an event was
  inserted, replaced or reordered there;
* ``rewritten`` — the chain is self-consistent but differs from what a checkpoint signed (the
  attacker recomputed SM3 after a change): the first bad position is somewhere in the range;
* ``truncated`` — the store ends before the last signed checkpoint (a cut tail or a rollback);
* ``checkpoint`` — a checkpoint with a bad signature, a broken checkpoint chain, or a
  disagreement between the primary checkpoint file and a witness copy.

The report names the first bad position; the CLI exits 1 when there is any finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ztgw.crypto.errors import CryptoError
from ztgw.crypto.sm2 import SM2PublicKey, load_public_key

from .chain import GENESIS, canonical, chain_fields, link, merkle_root
from .checkpoint import CHECKPOINT_FILE, Checkpoint, read_checkpoints
from .store import AuditStore

MAX_FINDINGS = 100


@dataclass
class Finding:
    kind: str
    position: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "position": self.position, "detail": self.detail}


@dataclass
class Report:
    events: int = 0
    last_position: int = 0
    checkpoints: int = 0
    checkpointed_to: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_position(self) -> int | None:
        positions = [f.position for f in self.findings if f.position is not None]
        return min(positions) if positions else None

    def add(self, kind: str, position: int | None, detail: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(kind, position, detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "events": self.events, "last_position": self.last_position,
            "checkpoints": self.checkpoints, "checkpointed_to": self.checkpointed_to,
            "first_bad_position": self.first_bad_position,
            "findings": [f.to_dict() for f in self.findings],
        }


def _load_checkpoints(primary: Path, witnesses: list[Path], public: SM2PublicKey | None,
                      report: Report) -> list[Checkpoint]:
    copies: dict[Path, list[Checkpoint]] = {}
    for path in [primary, *(w / CHECKPOINT_FILE for w in witnesses)]:
        cps, bad = read_checkpoints(path)
        for line in bad:
            report.add("checkpoint", None, line)
        copies[path] = cps
    merged: dict[int, Checkpoint] = {}
    for path, cps in copies.items():
        for cp in cps:
            known = merged.get(cp.seq_to)
            if known is not None and known != cp:
                report.add("checkpoint", cp.seq_from,
                           f"{path} disagrees with another copy about positions "
                           f"{cp.seq_from}..{cp.seq_to}")
            merged.setdefault(cp.seq_to, cp)
    top = max(merged) if merged else 0
    for path, cps in copies.items():
        have = max((cp.seq_to for cp in cps), default=0)
        if path != primary and not path.exists() and merged:
            report.add("checkpoint", None, f"witness copy {path} is missing")
        elif have < top:
            report.add("checkpoint", have + 1,
                       f"{path} ends at position {have} but another copy signed up to {top} "
                       "(rolled back or truncated)")
    ordered = [merged[k] for k in sorted(merged)]
    prev_digest, prev_to = GENESIS.hex(), 0
    for cp in ordered:
        if public is None:
            report.add("checkpoint", cp.seq_from, "no public key to check checkpoint signatures")
        elif not cp.verify(public):
            report.add("checkpoint", cp.seq_from,
                       f"the signature of checkpoint {cp.seq_from}..{cp.seq_to} does not verify")
        if cp.prev != prev_digest or cp.seq_from != prev_to + 1:
            report.add("checkpoint", cp.seq_from,
                       f"checkpoint {cp.seq_from}..{cp.seq_to} does not follow the one before")
        prev_digest, prev_to = cp.digest(), cp.seq_to
    return ordered


def verify(store: AuditStore, checkpoint_path: Path, public_key_path: Path,
           witnesses: list[Path] | None = None) -> Report:
    report = Report()
    public: SM2PublicKey | None = None
    try:
        public = load_public_key(public_key_path.read_bytes())
    except (OSError, CryptoError) as exc:
        report.add("checkpoint", None, f"cannot read the checkpoint public key: {exc}")
    cps = _load_checkpoints(checkpoint_path, witnesses or [], public, report)
    report.checkpoints = len(cps)
    report.checkpointed_to = cps[-1].seq_to if cps else 0

    expected = 1
    running = GENESIS  # chain value of position expected-1, as recorded
    cp_i = 0
    leaves: list[bytes] = []
    range_bad = False  # a chain finding inside the current checkpoint's range
    for seq, raw in store.iter_rows():
        report.events += 1
        report.last_position = seq
        # checkpoints whose range ended in a gap can no longer be checked
        while cp_i < len(cps) and cps[cp_i].seq_to < seq and cps[cp_i].seq_to < expected:
            cp_i += 1
            leaves, range_bad = [], False
        gap = seq > expected
        if gap:
            report.add("missing", expected,
                       f"positions {expected}..{seq - 1} are missing (deleted)")
            while cp_i < len(cps) and cps[cp_i].seq_to < seq:
                cp_i += 1
                leaves, range_bad = [], False
        try:
            doc = orjson.loads(raw)
            cseq, cprev, cval = chain_fields(doc)
            recomputed = link(bytes.fromhex(cprev or ""), cseq or 0, canonical(doc))
            recorded = bytes.fromhex(cval or "")
        except (orjson.JSONDecodeError, ValueError, TypeError):
            report.add("altered", seq, "the stored event is not a chained ECS document")
            expected, running = seq + 1, GENESIS
            continue
        found = len(report.findings)
        if cseq != seq:
            # an event recorded for an earlier position shows the first bad one (an insertion
            # pushed it down); for a later one, this position holds a moved event
            report.add("moved", min(seq, cseq or seq),
                       f"the event stored at position {seq} was recorded for position {cseq}")
        elif recomputed != recorded:
            report.add("altered", seq, f"the event at position {seq} does not match its hash")
        elif not gap and cprev != running.hex():
            report.add("unlinked", seq,
                       f"the event at position {seq} does not follow position {seq - 1} "
                       "(inserted, replaced or reordered)")
        range_bad = range_bad or gap or len(report.findings) > found
        # checkpoints: the chain values of their range, as they follow from the content
        if cp_i < len(cps) and cps[cp_i].seq_from <= seq <= cps[cp_i].seq_to:
            leaves.append(recomputed)
            cp = cps[cp_i]
            if seq == cp.seq_to:
                differs = recomputed.hex() != cp.head or merkle_root(leaves).hex() != cp.root
                if differs and not range_bad:  # (a finding above already names the position)
                    report.add("rewritten", cp.seq_from,
                               f"positions {cp.seq_from}..{cp.seq_to} differ from what the "
                               f"checkpoint of {cp.time} signed")
                cp_i += 1
                leaves = []
                range_bad = False
        running = recorded if len(recorded) == 32 else recomputed
        expected = seq + 1
    if report.checkpointed_to > report.last_position:
        report.add("truncated", report.last_position + 1,
                   f"the store ends at position {report.last_position} but a checkpoint signed "
                   f"up to {report.checkpointed_to}")
    report.findings.sort(key=lambda f: (f.position is None, f.position or 0))
    return report
