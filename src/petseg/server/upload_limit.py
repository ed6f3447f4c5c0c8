"""Refuse oversized or too slow uploads while they stream in, not after they are stored.

FastAPI parses a multipart form (spooling the file to disk) before the handler runs,
so a check in the handler comes too late. This middleware answers 413 at once when
Content-Length already says too much, and otherwise counts the body as the form
parser pulls it, stopping as soon as the count passes the limit.

uvicorn has no timeout for a request body: a client sending one byte a second would
hold its request open for ever. So the whole body must also arrive within
`deadline_s` of the first read, or the request ends with 408 and the connection is
closed. (Starlette's own RequestBodyLimitMiddleware answers in plain text and has no
deadline; this one keeps the API's JSON errors.)

The limit per upload does not bound the server: forty uploads made of parts just
under 1 MB (the form parser keeps such parts in memory) held about 1 GB until their
deadline. So the uploads of all requests in flight share one budget of bytes; an
upload that would pass it is answered 503 with Retry-After, and a request gives its
bytes back when it ends.
"""

from __future__ import annotations

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The rest of an over-limit or timed-out body is never read, so the connection cannot be reused.
CLOSE = {"Connection": "close"}
# Uploads in flight end within their deadline; a retry a little later usually finds room.
BUDGET_RETRY_AFTER_S = 2


class UploadRefused(HTTPException):
    """Raised from inside the body stream; FastAPI passes HTTPExceptions through to the handlers."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers={**CLOSE, **(headers or {})})


class UploadLimitMiddleware:
    """max_bytes per upload, deadline_s for each to arrive, budget_bytes for all uploads in flight."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, message: str, deadline_s: float, budget_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message
        self.deadline_s = deadline_s
        self.budget_bytes = budget_bytes
        # One event loop runs every request of this app, and the count changes only between
        # its awaits: no lock is needed.
        self.in_flight_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            # Closing the connection spares the client sending the rest for nothing.
            response = JSONResponse({"detail": self.message}, status_code=413, headers=CLOSE)
            await response(scope, receive, send)
            return

        received = 0
        deadline: float | None = None
        body_complete = False

        async def guarded_receive() -> Message:
            nonlocal received, deadline, body_complete
            if body_complete:  # later reads only wait for a disconnect, however long the work takes
                return await receive()
            if deadline is None:
                deadline = anyio.current_time() + self.deadline_s
            with anyio.move_on_after(deadline - anyio.current_time()) as timer:
                message = await receive()
            if timer.cancelled_caught:
                raise UploadRefused(
                    408, f"file: the upload did not arrive within {self.deadline_s:g} s; send it again"
                )
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                if received + size > self.max_bytes:
                    raise UploadRefused(413, self.message)
                if self.in_flight_bytes + size > self.budget_bytes:
                    raise UploadRefused(503, "the server is busy receiving other uploads; try again in "
                                        f"{BUDGET_RETRY_AFTER_S} s", {"Retry-After": str(BUDGET_RETRY_AFTER_S)})
                received += size
                self.in_flight_bytes += size
                body_complete = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, guarded_receive, send)
        finally:
            self.in_flight_bytes -= received
