"""From a verified token to the policy engine's :class:`Subject`, with directory attributes.

Attributes are read from the directory, not trusted from the token, so a role change or a
disabled client takes effect on the next request once the short cache lapses (ASVS 8.3.2).
"""

from __future__ import annotations

import time

from ztgw.policies.domain import Subject

from .directory import Directory
from .tokens import AccessToken

CACHE_SECONDS = 1.0  # how stale a directory attribute may be on the data plane


class SubjectResolver:
    def __init__(self, directory: Directory, ttl: float = CACHE_SECONDS) -> None:
        self.directory = directory
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Subject | None]] = {}

    def invalidate(self) -> None:
        self._cache.clear()

    def resolve(self, token: AccessToken) -> Subject | None:
        key = token.subject + "|" + token.client_id
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        subject = self._load(token)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, subject)
        return subject

    def _load(self, token: AccessToken) -> Subject | None:
        client = self.directory.get_client(token.client_id)
        if client is None or not client.enabled:
            return None
        if token.subject == f"client:{client.client_id}":
            return Subject(
                id=token.subject,
                kind="client",
                name=client.client_id,
                client_id=client.client_id,
                roles=frozenset(client.roles),
                department=client.department,
                clearance=client.clearance,
                attributes={"organization": client.organization, "display_name": client.name},
            )
        if token.subject.startswith("user:"):
            user = self.directory.get_user(token.subject[5:])
            if user is None or not user.enabled:
                return None
            return Subject(
                id=token.subject,
                kind="user",
                name=user.username,
                client_id=client.client_id,
                roles=frozenset(user.roles),
                department=user.department,
                clearance=user.clearance,
                attributes={**user.attributes, "organization": user.department},
            )
        return None
