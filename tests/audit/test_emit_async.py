"""``AuditLog.emit_async``: the event-loop side of "no audit, no access".  A waiter resolves
only once its event is in the spool, fails with AuditUnavailable when the spool write fails,
and the writer wakes the loop once per batch, not once per event."""

from __future__ import annotations

import asyncio

import pytest

from ztgw.audit.chain import chain_fields
from ztgw.audit.config import AuditSettings
from ztgw.audit.errors import AuditUnavailable
from ztgw.audit.log import AuditLog

from .conftest import make_event, with_


def test_waiters_resolve_once_spooled_with_few_loop_wakeups(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(with_(conf, sinks=()))
    log.start()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counting(*args, **kw):  # type: ignore[no-untyped-def]
            nonlocal wakeups
            wakeups += 1
            return original(*args, **kw)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        waiters = [log.emit_async(make_event(f"r{i}")) for i in range(300)]
        assert log.emit_async(make_event("fire-and-forget"), wait=False) is None
        await asyncio.wait_for(asyncio.gather(*waiters), 20)  # type: ignore[arg-type]
        return wakeups

    wakeups = asyncio.run(main())
    log.close()
    assert wakeups < 300, f"{wakeups} loop wake-ups for 300 events: one per batch expected"
    assert wakeups >= 1


def test_a_failed_spool_write_fails_the_waiter(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(conf)
    log.start()
    (conf.effective_spool_dir / "seg-0000000001.ndjson").symlink_to("/dev/full")

    async def main() -> None:
        waiter = log.emit_async(make_event("r1"))
        assert waiter is not None
        with pytest.raises(AuditUnavailable):
            await asyncio.wait_for(waiter, 10)
        with pytest.raises(AuditUnavailable):  # and the trail refuses from now on
            log.emit_async(make_event("r2"))

    asyncio.run(main())
    log.close()


def test_resolved_means_chained_in_the_spool(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(with_(conf, sinks=()))  # no sink: nothing collects the spool
    log.start()

    async def main() -> None:
        waiter = log.emit_async(make_event("durable"))
        assert waiter is not None
        await asyncio.wait_for(waiter, 10)
        # read by another handle while the writer runs: the event is there, chained
        lines = b"".join(p.read_bytes() for p in conf.effective_spool_dir.glob("seg-*.ndjson"))
        assert b'"durable"' in lines

    asyncio.run(main())
    log.close()
    docs = [d for d in _spooled(conf) if d["http"]["request"]["id"] == "durable"]
    assert docs and chain_fields(docs[0])[0] == 1


def _spooled(conf: AuditSettings) -> list[dict]:  # type: ignore[type-arg]
    import orjson

    out = []
    for p in sorted(conf.effective_spool_dir.glob("seg-*.ndjson")):
        out += [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()]
    return out
