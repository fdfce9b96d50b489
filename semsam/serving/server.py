"""The uvicorn server the demo runs on, with deadlines for slow, idle and half-open connections."""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from semsam.serving.limits import ServeLimits


def server_config(app: FastAPI, *, host: str, port: int, limits: ServeLimits) -> uvicorn.Config:
    """uvicorn's settings for the demo: the request read deadline, keep-alive time and connection limit of `limits`.

    Run it with `uvicorn.Server(server_config(...)).run()`.
    """
    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=timed_protocol(limits.read_timeout_s),
                          timeout_keep_alive=limits.keep_alive_s, limit_concurrency=limits.max_connections)


def timed_protocol(read_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose client has not sent a whole request (headers and body)
    within `read_timeout_s` of connecting or of the previous response.

    uvicorn itself times out only idle kept-alive connections, after a first response: a client that connects
    and sends nothing, or a few bytes at a time, would otherwise hold its connection forever.
    """

    class TimedH11Protocol(H11Protocol):
        _read_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_read_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_read_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
            super().connection_lost(exc)

        def _arm_read_deadline(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
            self._read_deadline = self.loop.call_later(read_timeout_s, self._read_deadline_passed)

        def _read_deadline_passed(self) -> None:
            if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
                self.transport.close()

    return TimedH11Protocol
