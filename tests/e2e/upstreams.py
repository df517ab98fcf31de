"""Upstreams that misbehave on purpose, for end-to-end tests of the data plane: an aiohttp
application on its own event-loop thread at 127.0.0.1:<free port>.  Subclasses define
``handle``; use ``start``/``stop`` or ``with``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from .conftest import free_port


class AiohttpUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        assert self._ready.wait(timeout), "the test upstream did not start"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
