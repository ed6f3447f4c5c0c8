"""ONNX Runtime's CPU memory for tensors: one arena for every session in the process, capped.

By default each session has its own arena, which grows as far as its graph asks: a
670-byte graph whose ConstantOfShape wants 4 GB, or a MatMul sized from its input (17 GB
at 256 px), took petseg past 3 GB before anything failed. Sessions here share one arena
registered with ONNX Runtime's environment and capped at ARENA_BYTES: such a graph fails
at its first allocation past the cap (`petseg cutout` peaked at 82 and 161 MB). Batches are cut to CALL_PIXELS
per run, so a real model stays far under the cap at any --batch-size (the bundled model
runs 8 photos at 256 px in under 192 MB; a 2048 px model runs one at a time).
"""

from __future__ import annotations

import functools

ARENA_BYTES = 2 * 2**30
CALL_PIXELS = 32 * 256 * 256


@functools.lru_cache(maxsize=1)
def shared_cpu_arena() -> bool:
    """Register the capped arena, once per process; whether sessions may use the environment's."""
    import onnxruntime

    memory = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                       onnxruntime.OrtMemType.DEFAULT)
    try:  # -1: ONNX Runtime's defaults for growth, first chunk and dead bytes
        onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(ARENA_BYTES, -1, -1, -1))
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
