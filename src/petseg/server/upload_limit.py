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
"""

from __future__ import annotations

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The rest of an over-limit or timed-out body is never read, so the connection cannot be reused.
CLOSE = {"Connection": "close"}


class UploadRefused(HTTPException):
    """Raised from inside the body stream; FastAPI passes HTTPExceptions through to the handlers."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code=status_code, detail=message, headers=CLOSE)


class UploadLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, message: str, deadline_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message
        self.deadline_s = deadline_s

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
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadRefused(413, self.message)
                body_complete = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)
