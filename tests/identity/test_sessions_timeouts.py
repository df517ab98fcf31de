"""SSO session lifetimes: idle and absolute timeouts end the session (and its token families)."""

from __future__ import annotations

import sqlalchemy as sa

from ztgw.gateway.identity.directory import Directory, UserRecord
from ztgw.gateway.identity.keys import KeyRing
from ztgw.gateway.identity.sessions import SessionManager
from ztgw.gateway.identity.store import OAuthStore, now, sessions
from ztgw.gateway.identity.tokens import TokenIssuer


def manager(directory: Directory, store: OAuthStore, keyring: KeyRing) -> SessionManager:
    directory.put_user(UserRecord(username="alice"))
    issuer = TokenIssuer(keyring, "http://127.0.0.1:1", "urn:ztgw:data-api", 300)
    return SessionManager(store, directory, issuer, idle_timeout=600, max_age=3600,
                          secure_cookies=False)


def age(store: OAuthStore, sid: str, **cols: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(sessions).where(sessions.c.sid == sid).values(**cols))


def test_live_session_is_found_and_touched(directory: Directory, store: OAuthStore,
                                           keyring: KeyRing) -> None:
    m = manager(directory, store, keyring)
    secret, sid = m.create("alice", "urn:ztgw:acr:pwd", ("pwd",), "10.0.0.1", "ua")
    age(store, sid, last_seen=now() - 300)
    s = m.current(secret)
    assert s is not None and s.sid == sid
    refreshed = store.session_by_sid(sid)
    assert refreshed is not None and refreshed.last_seen >= now() - 1
    assert m.current("not-the-secret") is None and m.current(sid) is None  # the public sid is no key


def test_idle_timeout_ends_the_session(directory: Directory, store: OAuthStore,
                                       keyring: KeyRing) -> None:
    m = manager(directory, store, keyring)
    secret, sid = m.create("alice", "urn:ztgw:acr:pwd", ("pwd",), None, None)
    store.create_family("fam-1", "app", "alice", sid)
    age(store, sid, last_seen=now() - 601)
    assert m.current(secret) is None
    ended = store.session_by_sid(sid)
    assert ended is not None and ended.ended
    assert store.family_revoked("fam-1")


def test_absolute_timeout_even_when_active(directory: Directory, store: OAuthStore,
                                           keyring: KeyRing) -> None:
    m = manager(directory, store, keyring)
    secret, sid = m.create("alice", "urn:ztgw:acr:pwd", ("pwd",), None, None)
    age(store, sid, created_at=now() - 3601, last_seen=now())
    assert m.current(secret) is None


def test_disabled_user_loses_the_session(directory: Directory, store: OAuthStore,
                                         keyring: KeyRing) -> None:
    m = manager(directory, store, keyring)
    secret, _sid = m.create("alice", "urn:ztgw:acr:pwd", ("pwd",), None, None)
    directory.set_user_enabled("alice", False)
    assert m.current(secret) is None
