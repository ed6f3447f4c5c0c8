"""Limits that guard every way an image comes in (CLI, server, Python API), and thread counts.

Kept free of heavy imports: the CLI reads them to show option defaults.
"""

# About 100 megapixels: far above any photo, far below a decompression bomb.
DEFAULT_MAX_PIXELS = 100_000_000
# The server's default: it takes photos from anyone, and a cutout's peak memory grows
# with the photo (944 MB at 50 megapixels in `petseg cutout`; a 99-megapixel upload took
# a server to 2.8 GB). Phones' largest modes fit.
SERVE_MAX_PIXELS = 50_000_000
# The server's smallest upload limit (1 KB) and upload deadline: below them every upload fails.
MIN_UPLOAD_MB = 0.001
MIN_READ_TIMEOUT_S = 0.1
# Upper ends: no photo petseg decodes is over 2 GB (decode.MAX_STREAM_BYTES), and a day is
# longer than any upload should take (1e308 MB overflowed into a traceback at start-up).
MAX_UPLOAD_MB = 2048
MAX_READ_TIMEOUT_S = 86_400

# One side more than this many times the other is not a photo: the model would see a strip
# less than 3 of its pixels wide, and matting's band (sized in model pixels) grows to
# thousands of photo pixels (a 1 x 5,000,000 PNG took 48 s and a 1 x 50,000,000 one 2.9 GB).
MAX_ASPECT_RATIO = 100

# Threads (or worker processes) petseg starts for one purpose: more than any machine has
# cores, and each costs memory (100000 exhausted it before a traceback).
MAX_THREADS = 1024
# `petseg serve --workers`: each is a process with its own copy of the model (about 300 MB),
# and each works on its own photos: more than a big machine's cores only fill its memory.
MAX_SERVER_WORKERS = 64
# Photos per model call: each holds about 3 MB at 256 px in flight (its letterboxed square,
# its probabilities, their mirror images), and more photos a call run no faster on a CPU.
# --batch-size 2000 of tiny photos took 4.8 GB.
MAX_BATCH_SIZE = 64
# DataLoader worker processes: each is a Python process with its own copy of the dataset's
# state; 1000 of them on 2 cores ran for minutes without starting an epoch.
MAX_DATA_WORKERS = 64


def is_whole_number(value, low: int, high: int | None = None) -> bool:
    """Whether `value` is an int (not a bool, not a float) in low..high (high None: no upper bound)."""
    return not isinstance(value, bool) and isinstance(value, int) and low <= value and (high is None or value <= high)


def finite_float(value) -> float | None:
    """`value` as a float if it is a finite number (an int or float, not a bool), else None.

    A JSON integer of 400 digits is an int no float holds: float() of it overflows.
    """
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_whole_number(value, option: str, low: int, high: int | None = None) -> None:
    """Refuse a count that is not a whole number in low..high (high None: no upper bound)."""
    from petseg.errors import PetsegError, quoted

    if not is_whole_number(value, low, high):
        bounds = f"in {low}..{high}" if high is not None else f"at least {low}"
        raise PetsegError(f"must be a whole number {bounds}, got {quoted(value)}", option=option)


def check_threads(threads: int | None, option: str = "threads") -> None:
    """Refuse a thread count outside 1..MAX_THREADS (None: the library's choice)."""
    if threads is not None:
        check_whole_number(threads, option, 1, MAX_THREADS)


# Random seeds (`train --seed`, `data toy --seed`): unsigned 32-bit numbers, as NumPy's
# legacy generator and most tools take them (2**63 and up overflowed PyTorch's seeding after
# the run folder was made).
MAX_SEED = 2**32 - 1
# `petseg data toy --n`: toy pets stand in for Oxford-IIIT Pet (7,349 photos) in offline runs
# and tests. 100,000 is over 13 times that (at the default 96 px, about 1 GB of disk and 7
# minutes on 2 cores); a count beyond it is a typo, refused at once, not hours of writing.
MAX_TOY_IMAGES = 100_000
