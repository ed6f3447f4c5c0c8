"""A test hook: stop a training process at an exact moment so a test can kill it there.

PETSEG_TEST_PAUSE="POINT:N:MARKER" makes the N-th arrival at POINT create the file MARKER
and wait until the process is killed. Points: "step" (after an optimizer step) and
"checkpoint-write" (the checkpoint is written to its temporary file, not yet renamed).
Unset (always, outside tests), it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

ENVIRONMENT_VARIABLE = "PETSEG_TEST_PAUSE"
_arrivals: Counter = Counter()


def pause_point(point: str) -> None:
    wanted = os.environ.get(ENVIRONMENT_VARIABLE)
    if not wanted:
        return
    name, count, marker = wanted.split(":", 2)
    if name != point:
        return
    _arrivals[point] += 1
    if _arrivals[point] == int(count):
        Path(marker).touch()
        while True:  # until killed
            time.sleep(1)
