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
