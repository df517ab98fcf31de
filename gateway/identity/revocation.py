"""The access-token revocation list, shared by every worker process through the directory DB.

Revoking a token writes its ``jti`` to ``oauth_revoked`` (see :mod:`.store`).  Each process keeps
an in-memory set and pulls new rows at most every ``POLL_SECONDS``, by sequence number, so the
data plane honours a revocation within 1 s without a database read per request.  Entries leave
the set once the token would have expired anyway.
"""

from __future__ import annotations

import threading
import time

from .store import OAuthStore

POLL_SECONDS = 0.5  # revocation reaches every worker within this (+ one request)
STALE_SECONDS = 5.0  # a list older than this is not trusted: verification fails closed


class RevocationUnavailable(Exception):
    """The revocation list could not be refreshed for too long."""


class RevocationList:
    def __init__(self, store: OAuthStore, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._jtis: dict[str, int] = {}
        self._seq = 0
        self._next_poll = 0.0
        self._lock = threading.Lock()
        self._last_ok = time.monotonic()
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        mono = time.monotonic()
        if not force and mono < self._next_poll:
            return
        with self._lock:
            if not force and mono < self._next_poll:
                return
            self._next_poll = mono + self.poll_seconds
            try:
                rows = self.store.revoked_since(self._seq)
            except Exception as exc:  # a locked or unreachable DB: tolerate briefly, then fail
                if mono - self._last_ok > STALE_SECONDS:
                    raise RevocationUnavailable("the revocation list is unavailable") from exc
                return
            self._last_ok = mono
            for seq, jti, exp in rows:
                self._jtis[jti] = exp
                self._seq = max(self._seq, seq)
            if len(self._jtis) > 10_000:
                cutoff = int(time.time()) - 300
                self._jtis = {j: e for j, e in self._jtis.items() if e >= cutoff}

    def is_revoked(self, jti: str) -> bool:
        """Fails closed: if the list cannot be read, the caller gets the exception."""
        self.refresh()
        return jti in self._jtis

    def revoke(self, jti: str, expires_at: int) -> None:
        self.store.revoke_jti(jti, expires_at)
        with self._lock:
            self._jtis[jti] = expires_at
