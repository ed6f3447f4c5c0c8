"""ONNX Runtime's CPU memory for tensors: one arena for every session in the process, capped.

By default each session has its own arena, which grows as far as its graph asks: a
670-byte graph whose ConstantOfShape wants 4 GB, or a MatMul sized from its input (17 GB
at 256 px), took petseg past 3 GB before anything failed. Sessions here share one arena
registered with ONNX Runtime's environment and capped (384 MB unless PETSEG_ONNX_MEMORY_MB
says otherwise): such a graph fails at its first allocation past the cap, and one that
asks in pieces under it stops at the cap, so a hostile model file stays under 500 MB.

Batches run CALL_PIXELS at a time, which keeps real models far under the cap at any
--batch-size and costs no speed on a CPU (8 photos a run were as fast as 32). Measured
here: the bundled int8 model's 8 photos at 256 px need under 192 MB, its float export's
under 256 MB, and a float model of 512 px takes two photos a run in 384 MB. A model of
1024 px or more needs PETSEG_ONNX_MEMORY_MB raised.
"""

from __future__ import annotations

import functools
import math
import os

MEMORY_VARIABLE = "PETSEG_ONNX_MEMORY_MB"
DEFAULT_MEMORY_MB = 384
# Below this not even the bundled model runs a photo.
MIN_MEMORY_MB = 64
CALL_PIXELS = 8 * 256 * 256


@functools.lru_cache(maxsize=1)
def arena_bytes() -> int:
    """The cap, read once per process (the arena is registered once)."""
    from petseg.errors import PetsegError, quoted

    text = os.environ.get(MEMORY_VARIABLE, str(DEFAULT_MEMORY_MB))
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not MIN_MEMORY_MB <= megabytes <= 2**30:
        raise PetsegError(f"{MEMORY_VARIABLE} must be a number of megabytes from {MIN_MEMORY_MB} up, "
                          f"got {quoted(text)}")
    return int(megabytes * 2**20)


@functools.lru_cache(maxsize=1)
def shared_cpu_arena() -> bool:
    """Register the capped arena, once per process; whether sessions may use the environment's."""
    import onnxruntime

    cap = arena_bytes()  # a bad PETSEG_ONNX_MEMORY_MB is the user's error, not an arena already there
    memory = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                       onnxruntime.OrtMemType.DEFAULT)
    try:  # -1: ONNX Runtime's defaults for growth, first chunk and dead bytes
        onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(cap, -1, -1, -1))
    except Exception as error:  # the application registered its own first: that one serves
        return "already" in str(error).lower()
    return True


def session_options(threads: int | None):
    """SessionOptions for a petseg session: `threads` intra-op threads (None: ONNX Runtime's
    choice) and the shared, capped CPU arena."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # fatal only: petseg reports a failed run itself, in one line
    if threads:
        options.intra_op_num_threads = threads
    if shared_cpu_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def images_per_run(height: int, width: int) -> int:
    """How many images of this size one session run takes (at least one)."""
    return max(1, CALL_PIXELS // max(1, height * width))


def is_out_of_memory(error: Exception) -> bool:
    """Whether an ONNX Runtime error is the capped arena refusing an allocation."""
    text = str(error)
    return "bfc_arena" in text or "Available memory of" in text or "Failed to allocate memory" in text
