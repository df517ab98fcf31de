"""CSRF tokens and signed tickets."""

from __future__ import annotations

import time

from ztgw.gateway.identity import sessions
from ztgw.gateway.identity.sessions import CsrfGuard


def test_csrf_token_is_bound_to_the_cookie() -> None:
    g = CsrfGuard(b"s" * 32)
    c1, c2 = g.new_cookie(), g.new_cookie()
    assert g.check(c1, g.token_for(c1))
    assert not g.check(c2, g.token_for(c1))
    assert not g.check(None, g.token_for(c1)) and not g.check(c1, None) and not g.check(c1, "")
    assert not CsrfGuard(b"t" * 32).check(c1, g.token_for(c1))


def test_signed_ticket(monkeypatch) -> None:
    g = CsrfGuard(b"s" * 32)
    t = g.sign("mfa", "alice", 60)
    assert g.verify_signed("mfa", "alice", t)
    assert not g.verify_signed("mfa", "bob", t)
    assert not g.verify_signed("other", "alice", t)
    assert not g.verify_signed("mfa", "alice", t[:-1] + ("0" if t[-1] != "0" else "1"))
    assert not g.verify_signed("mfa", "alice", "garbage") and not g.verify_signed("mfa", "alice", None)
    later = int(time.time()) + 120
    monkeypatch.setattr(sessions, "now", lambda: later)
    assert not g.verify_signed("mfa", "alice", t)
