"""How `petseg serve` runs uvicorn, shared with the tests so they exercise the same settings.

uvicorn closes a kept-alive connection after `timeout_keep_alive` seconds of silence,
but it never times out a request's headers: a fresh connection that sends nothing, or
sends its headers a byte a second, stays open for ever. HeaderDeadlineProtocol adds
that one rule to uvicorn's h11 protocol: each request's headers must be complete
within `timeout_keep_alive` seconds of the connection opening or of the previous
response. The body has its own deadline in the app (upload_limit.py).

uvicorn's `limit_concurrency` is left off on purpose: it counts connections, so a few
idle clients would make /healthz and the page answer 503. Inference work is bounded
in the app instead (inference_queue.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 5
# h11's cap on headers still arriving; a client that keeps sending more gets 400 and is closed.
MAX_HEADER_BYTES = 16 * 1024

_TIMEOUT_BODY = json.dumps({"detail": "the request headers did not arrive in time"}).encode()
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request's headers."""

    header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._start_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        super().connection_lost(exc)

    def _start_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        # A new request (its headers complete) replaces self.cycle; until then it is the finished one.
        previous = self.cycle

        def expire() -> None:
            still_waiting = self.cycle is previous and (previous is None or previous.response_complete)
            if still_waiting and not self.transport.is_closing():
                self.transport.write(REQUEST_TIMEOUT)
                self.transport.close()

        self.header_deadline = self.loop.call_later(self.timeout_keep_alive, expire)


def uvicorn_settings(*, header_timeout_s: float = HEADER_TIMEOUT_S) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config, besides the app, host, port and workers."""
    return {
        "http": HeaderDeadlineProtocol,
        "timeout_keep_alive": header_timeout_s,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "limit_concurrency": None,
    }
