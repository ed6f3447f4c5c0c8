"""A bounded queue of inference work: at most `threads` photos in the model, `queue_size` waiting.

Only requests whose upload has fully arrived are counted, so slow or idle clients
cannot fill the queue, and nothing else the server does (the page, /healthz, errors)
waits behind it. A request that finds every thread busy and the queue full is answered
at once with 503 and a Retry-After estimate, instead of piling up in memory.
"""

from __future__ import annotations

import math
import time
from typing import Callable, TypeVar

import anyio
from starlette.exceptions import HTTPException

T = TypeVar("T")

# How much each new inference time moves the running estimate behind Retry-After.
SMOOTHING = 0.2
# One photo counts as at most this many times the estimate: a single 50-megapixel upload
# (a minute's work) would otherwise tell every client of small photos to wait 13 times longer.
MOST_PER_PHOTO = 4.0


class ServerBusy(HTTPException):
    def __init__(self, running: int, waiting: int, retry_after_s: int) -> None:
        super().__init__(
            status_code=503,
            detail=f"the server is busy ({running} photo{'s' * (running != 1)} being cut out, {waiting} waiting); "
                   f"try again in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


class InferenceQueue:
    def __init__(self, threads: int, queue_size: int) -> None:
        self.threads = threads
        self.queue_size = queue_size
        # A limiter belongs to the event loop that uses it: made on first use, remade by reset().
        self.slots: anyio.CapacityLimiter | None = None
        self.waiting = 0
        self.mean_seconds = 1.0

    def reset(self) -> None:
        self.slots, self.waiting = None, 0

    async def run(self, function: Callable[[], T]) -> T:
        """Run `function` in a worker thread once a slot is free; ServerBusy if the queue is full."""
        if self.slots is None:  # no await since the check: one event loop cannot race here
            self.slots = anyio.CapacityLimiter(self.threads)
        if self.slots.available_tokens < 1 and self.waiting >= self.queue_size:
            raise ServerBusy(self.running, self.waiting, self.retry_after_s())
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            started = time.perf_counter()
            result = await anyio.to_thread.run_sync(function)
            seconds = min(time.perf_counter() - started, MOST_PER_PHOTO * self.mean_seconds)
            self.mean_seconds += SMOOTHING * (seconds - self.mean_seconds)
            return result
        finally:
            self.slots.release()

    @property
    def running(self) -> int:
        return 0 if self.slots is None else self.slots.borrowed_tokens

    def retry_after_s(self) -> int:
        """Seconds until the photos being cut out and those waiting are likely done (a slot free then)."""
        return max(1, math.ceil((self.running + self.waiting) * self.mean_seconds / self.threads))
