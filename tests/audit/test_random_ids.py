"""Identifiers from the buffered CSPRNG pool: right length, unique, and never shared with a
forked child (a child that replayed the parent's buffer would duplicate event ids)."""

from __future__ import annotations

import os

from ztgw.audit.events import RandomPool, new_event_id


def test_ids_are_unique_and_well_formed() -> None:
    pool = RandomPool()
    ids = [pool.hex(12) for _ in range(20_000)]  # crosses several buffer refills
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    events = {new_event_id() for _ in range(5_000)}
    assert len(events) == 5_000


def test_a_forked_child_does_not_replay_the_parents_bytes() -> None:
    pool = RandomPool()
    pool.hex(8)  # the buffer is filled; the child must not continue from it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, pool.hex(16).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != pool.hex(16)
    assert len(child) == 32


def test_the_long_field_scan_matches_its_regex_definition() -> None:
    """``_has_long_run`` is the linear-time form of ``_LONG_JSON`` (whose backtracking took
    seconds on a 400 KB event): same answer on runs around the limit, with quotes and
    backslashes in between."""
    import random

    from ztgw.audit.events import _LONG_JSON, MAX_FIELD_CHARS, _has_long_run

    rng = random.Random(7)
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(b"x" * rng.choice([0, 5, MAX_FIELD_CHARS - 1, MAX_FIELD_CHARS,
                                            MAX_FIELD_CHARS + 1, MAX_FIELD_CHARS + 7]))
            parts.append(rng.choice([b'"', b"\\", b"", b'\\"']))
        raw = b"".join(parts)
        assert bool(_LONG_JSON.search(raw)) == _has_long_run(raw), [len(p) for p in parts]
