"""The revocation list is shared through the database: a token revoked by one worker is
refused by another, and the verifier's cache never hides a revocation."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from ztgw.gateway.identity.directory import Directory
from ztgw.gateway.identity.keys import KeyRing
from ztgw.gateway.identity.revocation import RevocationList
from ztgw.gateway.identity.store import OAuthStore
from ztgw.gateway.identity.tokens import AccessTokenVerifier, TokenInvalid, TokenIssuer

ISS, AUD = "http://127.0.0.1:1", "urn:ztgw:data-api"


def two_workers(directory_opener: Callable[[], Directory], keyring: KeyRing
                ) -> tuple[AccessTokenVerifier, AccessTokenVerifier, TokenIssuer]:
    a = RevocationList(OAuthStore(directory_opener().engine), poll_seconds=0.0)
    b = RevocationList(OAuthStore(directory_opener().engine), poll_seconds=0.0)
    va = AccessTokenVerifier(keyring.keyset, ISS, AUD, revocations=a)
    vb = AccessTokenVerifier(keyring.keyset, ISS, AUD, revocations=b)
    return va, vb, TokenIssuer(keyring, ISS, AUD, 300)


def test_revoked_in_one_worker_refused_in_the_other(directory_opener: Callable[[], Directory],
                                                    keyring: KeyRing) -> None:
    va, vb, issuer = two_workers(directory_opener, keyring)
    token, jti, exp = issuer.issue_access_token_with_id(subject="client:x", client_id="x", scope="")
    assert vb.verify(token).jti == jti  # now cached in worker b
    assert va.verify(token).jti == jti
    assert va.revocations is not None
    va.revocations.revoke(jti, exp)
    with pytest.raises(TokenInvalid) as e:
        vb.verify(token)  # a cache hit, still refused
    assert e.value.reason == "revoked"
    other, _, _ = issuer.issue_access_token_with_id(subject="client:x", client_id="x", scope="")
    assert vb.verify(other).subject == "client:x"  # only that token


def test_poll_interval_bounds_staleness(directory_opener: Callable[[], Directory]) -> None:
    writer = OAuthStore(directory_opener().engine)
    reader = RevocationList(OAuthStore(directory_opener().engine), poll_seconds=0.2)
    writer.revoke_jti("j1", int(time.time()) + 60)
    reader.refresh(force=True)
    assert reader.is_revoked("j1")
    writer.revoke_jti("j2", int(time.time()) + 60)
    deadline = time.monotonic() + 5
    while not reader.is_revoked("j2") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader.is_revoked("j2")


def test_unreadable_list_fails_closed(tmp_path, directory_opener: Callable[[], Directory],
                                     keyring: KeyRing) -> None:
    from ztgw.gateway.identity import revocation

    va, _vb, issuer = two_workers(directory_opener, keyring)
    token = issuer.issue_access_token(subject="client:x", client_id="x", scope="")
    va.verify(token)
    assert va.revocations is not None
    va.revocations.store.engine.dispose()
    import sqlalchemy as sa

    va.revocations.store.engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/none.db")
    va.revocations._last_ok -= revocation.STALE_SECONDS + 1
    with pytest.raises(TokenInvalid) as e:
        va.verify(token)
    assert e.value.reason == "revocation_unavailable"


def test_id_token_is_refused_as_access_token(keyring: KeyRing) -> None:
    issuer = TokenIssuer(keyring, ISS, AUD, 300)
    idt = issuer.issue_id_token(client_id="app", alg="ES256", claims={"sub": "alice"})
    with pytest.raises(TokenInvalid) as e:
        AccessTokenVerifier(keyring.keyset, ISS, AUD).verify(idt)
    assert e.value.reason in ("wrong_type", "wrong_audience")
