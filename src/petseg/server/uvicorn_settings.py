"""How `petseg serve` runs uvicorn, shared with the tests so they exercise the same settings.

uvicorn closes a kept-alive connection after `timeout_keep_alive` seconds of silence,
but it never times out a request's headers: a fresh connection that sends nothing, or
sends its headers a byte a second, stays open for ever. DeadlineProtocol adds
that rule to uvicorn's h11 protocol: each request's headers must be complete
within `timeout_keep_alive` seconds of the connection opening or of the previous
response. The body has its own deadline in the app (upload_limit.py).

Nor does uvicorn time out a client that stops reading its answer: the unsent part of
the response (tens of MB for a big cutout) waits in the connection's buffer for ever.
So a connection whose buffered answer makes no progress for `send_stall_s` seconds
is aborted, which frees that buffer and ends the request.

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
# A slow phone still takes some of its answer every few seconds; a client that takes none
# for this long is not reading.
SEND_STALL_S = 30
# h11's cap on headers still arriving; a client that keeps sending more gets 400 and is closed.
MAX_HEADER_BYTES = 16 * 1024

_TIMEOUT_BODY = json.dumps({"detail": "the request headers did not arrive in time"}).encode()
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request's headers and for a stalled answer."""

    header_deadline: asyncio.TimerHandle | None = None
    send_deadline: asyncio.TimerHandle | None = None
    send_stall_s: float = SEND_STALL_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._start_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        for deadline in (self.header_deadline, self.send_deadline):
            if deadline is not None:
                deadline.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: the client must now take some of it in time."""
        super().pause_writing()
        self._start_send_deadline(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        if self.send_deadline is not None:
            self.send_deadline.cancel()
        super().resume_writing()

    def _start_send_deadline(self, buffered: int) -> None:
        if self.send_deadline is not None:
            self.send_deadline.cancel()

        def expire() -> None:
            now_buffered = self.transport.get_write_buffer_size()
            if now_buffered < buffered:  # the client is reading, however slowly
                self._start_send_deadline(now_buffered)
            else:  # abort, not close: close would wait for the buffer to be sent, keeping it
                self.transport.abort()

        self.send_deadline = self.loop.call_later(self.send_stall_s, expire)

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


def uvicorn_settings(*, header_timeout_s: float = HEADER_TIMEOUT_S, send_stall_s: float = SEND_STALL_S
                     ) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config, besides the app, host, port and workers."""
    protocol = DeadlineProtocol
    if send_stall_s != SEND_STALL_S:  # uvicorn makes the protocol from its class: the setting goes in a subclass
        protocol = type("DeadlineProtocol", (DeadlineProtocol,), {"send_stall_s": send_stall_s})
    return {
        "http": protocol,
        "timeout_keep_alive": header_timeout_s,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "limit_concurrency": None,
    }
