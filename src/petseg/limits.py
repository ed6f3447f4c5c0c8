"""Limits that guard every way an image comes in (CLI, server, Python API).

Kept free of heavy imports: the CLI reads them to show option defaults.
"""

# About 100 megapixels: far above any photo, far below a decompression bomb.
DEFAULT_MAX_PIXELS = 100_000_000
