"""Limits that guard every way an image comes in (CLI, server, Python API), and thread counts.

Kept free of heavy imports: the CLI reads them to show option defaults.
"""

# About 100 megapixels: far above any photo, far below a decompression bomb.
DEFAULT_MAX_PIXELS = 100_000_000

# Threads (or worker processes) petseg starts for one purpose: more than any machine has
# cores, and each costs memory (100000 exhausted it before a traceback).
MAX_THREADS = 1024


def check_threads(threads: int | None, option: str = "threads") -> None:
    """Refuse a thread count that is not a whole number in 1..MAX_THREADS (None: the library's choice)."""
    from petseg.errors import PetsegError, clipped

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= MAX_THREADS):
        raise PetsegError(f"must be a whole number in 1..{MAX_THREADS}, got {clipped(repr(threads))}", option=option)
