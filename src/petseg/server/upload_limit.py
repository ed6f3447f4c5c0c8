"""Refuse oversized uploads while they stream in, not after they are stored.

FastAPI parses a multipart form (spooling the file to disk) before the handler runs,
so a size check in the handler comes too late. This middleware answers 413 at once
when Content-Length already says too much, and otherwise counts the body as the
form parser pulls it, stopping as soon as the count passes the limit.
(Starlette's own RequestBodyLimitMiddleware answers in plain text; this one keeps
the API's JSON errors.)
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class UploadTooLarge(HTTPException):
    """Raised from inside the body stream; FastAPI passes HTTPExceptions through to the handlers."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message)


class UploadLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, message: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            # Closing the connection spares the client sending the rest for nothing.
            response = JSONResponse({"detail": self.message}, status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.message)
            return message

        await self.app(scope, counting_receive, send)
