"""Cut out many files at once: batches for the model, threads for decoding and encoding.

Pillow decodes, resizes and encodes with the GIL released, and both backends release
it while they compute, so reading the next photos and writing the last cutouts
overlap with inference and a folder keeps every core busy. Read-ahead is bounded by
pixels, not only by count, so a folder of 50-megapixel photos does not fill the memory.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from petseg.data.decode import DEFAULT_MAX_PIXELS, load_rgb, not_a_regular_file, open_lazily
from petseg.errors import PetsegError
from petseg.atomic import write_atomic
from petseg.inference.files import Job
from petseg.limits import MAX_BATCH_SIZE, check_whole_number
from petseg.inference.render import CutoutOptions, predict_for_cutout, render_cutout, save_image
from petseg.inference.segmenter import DEFAULT_BATCH_SIZE, Prediction, Segmenter

# Decoded photos waiting for the model or for their output, in pixels (~120 MB of RGB).
# One photo is always admitted, however large.
IN_FLIGHT_PIXELS = 40_000_000
THREADS = 2


@dataclass
class CutoutSummary:
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per file: its path and the reason


def header_pixels(path: Path) -> int:
    """Width x height from the file header (no decoding); 0 when unreadable (decoding reports it)."""
    if not_a_regular_file(path):
        return 0  # a FIFO would block here; the decoder reports it
    try:
        with open_lazily(path, str(path)) as image:  # refuses formats that decode while opening
            return image.width * image.height
    except Exception:  # any unreadable file is reported by the decoder, with its reason
        return 0


def write_cutout(job: Job, photo: np.ndarray, prediction: Prediction, options: CutoutOptions) -> None:
    image = render_cutout(photo, prediction, options)
    write_atomic(job.output, lambda file: save_image(image, file, options.image_format))


def run_cutouts(
    segmenter: Segmenter,
    jobs: Iterable[Job],
    options: CutoutOptions,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    on_error: Callable[[str], None] = lambda message: None,
    on_done: Callable[[Job], None] = lambda job: None,
    describe: Callable[[PetsegError], str] = str,
) -> CutoutSummary:
    """Process every job; a bad file is reported through on_error and the others go on.

    `describe` words a file's error for the front end (the CLI names its flags).
    """
    check_whole_number(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    summary = CutoutSummary()
    waiting = deque(jobs)
    reading: deque[tuple[Job, int, Future]] = deque()
    writing: deque[tuple[Job, int, Future]] = deque()
    batch: list[tuple[Job, int, np.ndarray]] = []
    in_flight = 0  # pixels read or being read, not yet written
    head_pixels: int | None = None  # header size of waiting[0], peeked once

    def fail(job: Job, message: str, pixels: int) -> None:
        nonlocal in_flight
        in_flight -= pixels
        summary.failed.append(message)
        on_error(message)
        on_done(job)

    def finish_write(job: Job, pixels: int, future: Future) -> None:
        nonlocal in_flight
        try:
            future.result()
        except PetsegError as error:
            return fail(job, describe(error), pixels)
        except OSError as error:
            return fail(job, f"{job.output}: cannot write ({error.strerror or error})", pixels)
        in_flight -= pixels
        summary.written.append(job.output)
        on_done(job)

    with ThreadPoolExecutor(THREADS, "petseg-read") as readers, ThreadPoolExecutor(THREADS, "petseg-write") as writers:
        while waiting or reading or batch or writing:
            while waiting and len(reading) < 2 * batch_size:
                if head_pixels is None:
                    head_pixels = header_pixels(waiting[0].source)
                if in_flight and in_flight + head_pixels > IN_FLIGHT_PIXELS:
                    break
                job = waiting.popleft()
                reading.append((job, head_pixels, readers.submit(load_rgb, job.source, max_pixels=max_pixels)))
                in_flight += head_pixels
                head_pixels = None
            while writing and writing[0][2].done():
                finish_write(*writing.popleft())

            if reading:
                job, pixels, future = reading.popleft()
                try:
                    batch.append((job, pixels, future.result()))
                except PetsegError as error:
                    fail(job, describe(error), pixels)
            if batch and (len(batch) >= batch_size or not reading):
                predictions = predict_for_cutout(segmenter, [photo for _, _, photo in batch], options)
                for (job, pixels, photo), prediction in zip(batch, predictions):
                    writing.append((job, pixels, writers.submit(write_cutout, job, photo, prediction, options)))
                batch = []
            elif writing and (not reading or len(writing) > 2 * batch_size):
                finish_write(*writing.popleft())  # wait: memory or the writers are the bottleneck
    return summary
