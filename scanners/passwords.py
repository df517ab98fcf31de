"""``ztgw scan passwords``: weak, reused or policy-violating local credentials.

Works on the stored verifiers only: each candidate (a public weak-password list plus
patterns built from the account's own name) is hashed with the verifier's own salt and
compared in constant time (:func:`ztgw.crypto.passwords.verify_password`).  A finding says
*that* a password is weak and which list entry number it matched — never the password.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from ztgw.crypto.errors import InvalidPassword, MalformedInput
from ztgw.crypto.passwords import needs_rehash, verify_password

MAX_GUESSES = 200  # per credential: the scan stays bounded (PBKDF2 is slow by design)
MIN_LENGTH = 12  # policy length (ASVS 6.2.1 / GB/T 22239 level 3 complexity)


@dataclass(frozen=True, slots=True)
class Credential:
    kind: str  # "user" or "client"
    name: str
    verifier: str | None
    enabled: bool = True
    public: bool = False


def own_variants(name: str) -> list[str]:
    n = name.split("@")[0]
    return [n, n + "123", n + "@123", n.capitalize() + "@123", n + "123456", n + "2025", n + "2026",
            n.capitalize() + "@2025", n.capitalize() + "@2026", n[::-1]]


def candidates(name: str, extra: Iterable[str] = ()) -> list[str]:
    base = [line.strip() for line in resources.files("ztgw.scanners").joinpath(
        "weak-passwords.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")]
    seen: dict[str, None] = {}
    for c in [*own_variants(name), *base, *extra]:
        seen.setdefault(c, None)
    return list(seen)[:MAX_GUESSES]


def scan_credentials(creds: Iterable[Credential], *, extra_candidates: Iterable[str] = (),
                     max_guesses: int = MAX_GUESSES) -> dict[str, Any]:
    started = time.monotonic()
    findings: list[dict[str, Any]] = []
    cracked: dict[str, list[str]] = {}  # keyed hash of the guess → accounts (no clear text kept)
    run_key = secrets.token_bytes(32)
    checked = 0
    extra = list(extra_candidates)
    for c in creds:
        checked += 1
        who = f"{c.kind}:{c.name}"
        if c.kind == "client":
            if not c.public and not c.verifier:
                findings.append({"account": who, "severity": "high",
                                 "finding": "confidential client without a secret"})
            continue
        if not c.verifier:
            if c.enabled:
                findings.append({"account": who, "severity": "medium",
                                 "finding": "enabled account without a password (external sign-in only?)"})
            continue
        try:
            if needs_rehash(c.verifier):
                findings.append({"account": who, "severity": "medium",
                                 "finding": "password verifier below the current PBKDF2 work factor"})
        except MalformedInput:
            findings.append({"account": who, "severity": "high",
                             "finding": "password verifier in an unknown or unsafe format"})
            continue
        for guess in candidates(c.name, extra)[:max_guesses]:
            try:
                verify_password(guess, c.verifier)
            except InvalidPassword:
                continue
            except MalformedInput:
                break
            kind = ("derived from the account name" if guess in own_variants(c.name)
                    else "in the weak-password list")
            short = len(guess) < MIN_LENGTH
            findings.append({"account": who, "severity": "critical" if c.enabled else "medium",
                             "finding": f"weak password ({kind})"
                             + ("; shorter than the policy minimum" if short else "")})
            # reuse is matched on a keyed hash of the guess, valid for this run only
            cracked.setdefault(hmac.new(run_key, guess.encode(), "sha256").hexdigest(), []).append(who)
            break
    for accounts in cracked.values():
        if len(accounts) > 1:
            findings.append({"account": ", ".join(accounts), "severity": "high",
                             "finding": f"the same weak password on {len(accounts)} accounts"})
    return {"checked": checked, "findings": findings,
            "weak": sum(1 for f in findings if f["finding"].startswith("weak password")),
            "seconds": round(time.monotonic() - started, 3)}


def as_dicts(creds: Iterable[Credential]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(c).items() if k != "verifier"} for c in creds]
