"""The writer's fast paths give the same answers as their plain definitions: the byte scans
that decide whether an event needs sanitising, the one-pass chain + spool serialisation, the
Merkle root and the writer's hand-off queue."""

from __future__ import annotations

import random
from typing import Any

import orjson

from ztgw.audit.chain import canonical
from ztgw.audit.events import (
    _CONTROL_JSON,
    _SECRET_JSON,
    MAX_FIELD_CHARS,
    SECRET_KEYS,
    _has_long_run,
    needs_sanitize,
    sanitize,
)

KEYS = [*sorted(SECRET_KEYS), "event", "user", "name", "tokens", "xtoken", "token_x", "secrets",
        "id", "a\"token", "api-key", "pass word", "Σ", "值"]
STRINGS = ["plain", "核心", "x\ny", "\x1b[31m", "a\x7fb", "line\u2028sep", "para\u2029", "“quoted”",
           "…", "back\\slash", 'say "token":', "\"password\":", "\t", "\x00", "é", ""]


def _case(rng: random.Random, key: str) -> str:
    return "".join(c.upper() if rng.random() < 0.3 else c for c in key)


def _value(rng: random.Random, depth: int) -> Any:
    r = rng.random()
    if depth < 4 and r < 0.25:
        return {_case(rng, rng.choice(KEYS)): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 4 and r < 0.35:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.45:
        return rng.choice([None, 3, 2.5, True])
    if r < 0.5:
        return "x" * rng.choice([MAX_FIELD_CHARS - 1, MAX_FIELD_CHARS, MAX_FIELD_CHARS + 1])
    return rng.choice(STRINGS) + rng.choice(STRINGS)


def _reference(raw: bytes) -> bool:
    """The plain definition: a control escape, a secret-named key, an over-long string."""
    return bool(_CONTROL_JSON.search(raw) or _SECRET_JSON.search(raw.lower())
                or _has_long_run(raw))


def test_needs_sanitize_agrees_with_its_definition_on_random_events() -> None:
    rng = random.Random(9)
    flagged = 0
    for _ in range(3000):
        doc = {"event": {"id": "e"}, "ztgw": _value(rng, 1)}
        raw = canonical(doc)
        expected = _reference(raw)
        assert needs_sanitize(raw) == expected, raw[:300]
        flagged += expected
    assert 300 < flagged < 2900  # both answers were exercised


def test_a_secret_named_key_is_flagged_in_any_case_and_depth() -> None:
    for key in sorted(SECRET_KEYS):
        for shown in (key, key.upper(), key.capitalize()):
            raw = orjson.dumps({"a": [{"b": {shown: "v"}}]})
            assert needs_sanitize(raw), shown
            assert sanitize(orjson.loads(raw))["a"][0]["b"][shown] != "v"
    assert not needs_sanitize(orjson.dumps({"tokens": 1, "xtoken": 2, "token_x": 3, "msg": "token"}))
