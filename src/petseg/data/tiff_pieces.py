"""Refuse TIFFs cut into more pieces than any photo needs, before Pillow opens them.

Pillow's TIFF plugin turns every strip (or tile) of the first image into Python objects
while it opens the file, before the image's size can be checked: a 16 MB file of a
1-pixel-wide image in 4 million one-row strips took 1.45 GB and 17 s to open, and a
server kept the memory. Cameras and scanners write a strip per 8 KB or so and never
more than one per row, so a photo within the pixel limit and its 100:1 shape has at
most 100,000 rows; tiles are at least 16 x 16, a few hundred thousand at 100 megapixels.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

MAX_PIECES = 400_000
STRIP_OFFSETS, TILE_OFFSETS = 273, 324
# A directory's entry count is 16 bits in a classic TIFF; BigTIFF's 64-bit one is read no further.
MAX_ENTRIES = 65_535
BYTE_ORDERS = {b"II": "<", b"MM": ">"}
# version -> (where the first directory's offset is, its format, the entry count's format,
# an entry's format: tag, type, count, then the value skipped)
LAYOUTS = {42: (4, "I", "H", "HHI4x"), 43: (8, "Q", "Q", "HHQ8x")}


def count_pieces(file: BinaryIO) -> int:
    """The strips or tiles the first image of a TIFF declares (0 for other files, or where the
    header is cut short); leaves the file's position where it was."""
    position = file.tell()
    try:
        file.seek(0)
        head = file.read(16)
        order = BYTE_ORDERS.get(head[:2])
        if order is None or len(head) < 16:
            return 0
        layout = LAYOUTS.get(struct.unpack_from(order + "H", head, 2)[0])
        if layout is None:
            return 0
        at, offset_format, count_format, entry_format = layout
        file.seek(struct.unpack_from(order + offset_format, head, at)[0])
        raw = file.read(struct.calcsize(count_format))
        if len(raw) < struct.calcsize(count_format):
            return 0
        entries = min(struct.unpack(order + count_format, raw)[0], MAX_ENTRIES)
        entry_bytes = struct.calcsize(order + entry_format)
        table = file.read(entries * entry_bytes)
        pieces = 0
        for start in range(0, len(table) - entry_bytes + 1, entry_bytes):
            tag, _, count = struct.unpack_from(order + entry_format, table, start)
            if tag in (STRIP_OFFSETS, TILE_OFFSETS):
                pieces = max(pieces, count)
        return pieces
    finally:
        file.seek(position)
