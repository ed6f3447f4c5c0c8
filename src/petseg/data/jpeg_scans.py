"""Refuse JPEGs whose scans would cost more than their pixels: the pixel limit does not bound them.

A progressive JPEG's decoder goes over the whole image once per scan, and a scan can be
10 bytes: a 230 KB file of 4,000 empty scans at 7000 x 7000 took a server 27 s, and the
upload limit allows millions. libjpeg-turbo leaves the bound to its callers (its fuzzers
and tools stop at 500 scans: TJPARAM_SCANLIMIT), and Pillow sets none, so petseg counts
them before decoding. Photos have 1 to about 20.
"""

from __future__ import annotations

from typing import BinaryIO

MAX_SCANS = 500
# A scan starts with the SOS marker. Inside compressed data a 0xFF byte is always followed by
# 0x00 or a restart marker, so these two bytes mean a scan (or, rarely, lie inside metadata,
# such as an EXIF thumbnail's single scan: counting those errs towards refusing).
START_OF_SCAN = b"\xff\xda"
CHUNK_BYTES = 1 << 20


def count_scans(file: BinaryIO, stop_after: int = MAX_SCANS) -> int:
    """START_OF_SCAN markers in the file from its start, counting no further than `stop_after` + 1;
    leaves the file's position where it was."""
    position = file.tell()
    file.seek(0)
    count, carry = 0, b""
    try:
        while count <= stop_after:
            chunk = file.read(CHUNK_BYTES)
            if not chunk:
                break
            data = carry + chunk
            count += data.count(START_OF_SCAN)
            carry = data[-1:] if data[-1:] == b"\xff" else b""  # a marker split across two reads
    finally:
        file.seek(position)
    return count
