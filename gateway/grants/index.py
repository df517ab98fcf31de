"""The data plane's view of grants and consents: an in-memory index, never a query per request.

``apply(subject, dataset)`` is a dict look-up on the hot path; it adds the caller's active grant
(:class:`~ztgw.policies.conditions.GrantScope`) and the consents given to the caller's
application (:class:`~ztgw.policies.conditions.ConsentScope`) as subject attributes, which the
bundle's ``granted`` / ``consented`` conditions and ``grant`` / ``consent`` obligations read.
Expiry and not-before are checked against the clock at request time.

A daemon thread polls the store's change counter every :data:`POLL_SECONDS` and reloads the
index when it moved, so a change made by any replica (or the CLI) is enforced by every replica
within a second; a change made in this process reloads the index before the call returns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ztgw.policies.conditions import CONSENT_ATTRIBUTE, GRANT_ATTRIBUTE, ConsentScope, GrantScope
from ztgw.policies.domain import Subject

from ..catalogue import Dataset
from .store import Grant, GrantStore

POLL_SECONDS = 0.2  # revocation reaches every replica within 1 s: poll + reload well under it
RESERVED = (GRANT_ATTRIBUTE, CONSENT_ATTRIBUTE)
MAX_MEMO = 50_000  # enriched subjects kept (one per caller and dataset); then start afresh
log = logging.getLogger("ztgw.grants")


@dataclass(frozen=True, slots=True)
class _ConsentEntry:
    consent_id: str
    subject_key: str
    not_before: int
    expires_at: int


def _scope(g: Grant) -> GrantScope:
    return GrantScope(grant_id=g.id, fields=g.fields, row_field=g.row_field,
                      row_values=g.row_values, rows_per_day=g.rows_per_day,
                      rows_per_request=g.rows_per_request)


class EntitlementIndex:
    def __init__(self, store: GrantStore, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        # (grantee, dataset) → newest first: (grant, its scope built once at load)
        self._grants: dict[tuple[str, str], tuple[tuple[Grant, GrantScope], ...]] = {}
        self._consents: dict[tuple[str, str], tuple[_ConsentEntry, ...]] = {}
        self._seen = -1
        self._memo: dict[tuple[str, str, str],
                          tuple[Subject, GrantScope | None, tuple[str, ...], Subject]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.healthy = True
        self.reload()

    # --- loading -------------------------------------------------------------------------
    def reload(self) -> None:
        """Read every active grant and consent and swap the index in one assignment."""
        with self._lock:
            counter = self.store.counter()
            t = int(time.time())
            grants: dict[tuple[str, str], list[Grant]] = {}
            for g in self.store.active_grants(t):
                grants.setdefault((g.grantee, g.dataset), []).append(g)
            consents: dict[tuple[str, str], list[_ConsentEntry]] = {}
            for c in self.store.active_consents(t):
                consents.setdefault((c.client_id, c.dataset), []).append(
                    _ConsentEntry(c.id, c.subject_key, c.not_before, c.expires_at))
            # newest grant first: one grant decides a request (see docs/grants.md)
            self._grants = {
                k: tuple((g, _scope(g)) for g in sorted(v, key=lambda g: (g.created_at, g.id),
                                                         reverse=True))
                for k, v in grants.items()}
            self._consents = {k: tuple(v) for k, v in consents.items()}
            self._memo = {}
            self._seen = counter

    def poll_once(self) -> bool:
        """Reload if the change counter moved; True when it did."""
        if self.store.counter() != self._seen:
            self.reload()
            return True
        return False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ztgw-grants-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
                self.healthy = True
            except Exception:  # a database hiccup: keep polling, say so in /readyz
                self.healthy = False
                log.warning("grant index reload failed", exc_info=True)

    # --- the hot path --------------------------------------------------------------------
    def apply(self, subject: Subject, dataset: Dataset) -> Subject:
        name = dataset.dataset
        grants = self._grants.get((subject.id, name)) if self._grants else None
        consents = self._consents.get((subject.client_id, name)) if self._consents else None
        attrs = subject.attributes
        if grants is None and consents is None:
            if GRANT_ATTRIBUTE not in attrs and CONSENT_ATTRIBUTE not in attrs:
                return subject  # the common case: two dict look-ups
            return self._with(subject, None, None)
        t = time.time()
        scope = None
        for g, built in grants or ():
            if g.active_at(t):
                scope = built
                break
        live: list[_ConsentEntry] = []
        if consents and dataset.subject_field:
            live = [c for c in consents if c.not_before <= t < c.expires_at]
        live_ids = tuple(c.consent_id for c in live)
        # the resolver hands out one Subject object per caller for its cache period: reuse the
        # enriched copy while the caller, its grant scope and its live consents are the same
        key = (subject.id, subject.client_id, name)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is subject and hit[1] is scope and hit[2] == live_ids:
            return hit[3]
        consent = None
        if live:
            consent = ConsentScope(field=str(dataset.subject_field),
                                   values=tuple(sorted({c.subject_key for c in live})),
                                   consent_ids=live_ids)
        out = self._with(subject, scope, consent)
        if len(self._memo) >= MAX_MEMO:
            self._memo = {}
        self._memo[key] = (subject, scope, live_ids, out)
        return out

    @staticmethod
    def _with(subject: Subject, grant: GrantScope | None, consent: ConsentScope | None) -> Subject:
        out: dict[str, Any] = {k: v for k, v in subject.attributes.items() if k not in RESERVED}
        if grant is not None:
            out[GRANT_ATTRIBUTE] = grant
        if consent is not None:
            out[CONSENT_ATTRIBUTE] = consent
        return Subject(id=subject.id, kind=subject.kind, name=subject.name,
                       client_id=subject.client_id, roles=subject.roles,
                       department=subject.department, clearance=subject.clearance,
                       attributes=MappingProxyType(out))
