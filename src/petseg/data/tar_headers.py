"""Refuse tar archives whose header extensions are too long, before tarfile reads them.

tarfile reads a GNU long name or link name ('L', 'K') and a pax header ('x', 'g') whole
into memory while it reads the member they belong to, before any check of that member
can run: a 778 KB .tar.gz whose long name was 800 MB of one letter took a download past
6 GB. Pythons before 3.11.10 and 3.12.6 also search pax headers with a pattern that is
quadratic in their length (CVE-2024-6232): a 464-byte .tar.gz of 300,000 digits held a
core for 1 minute 45. Real archives' long names are a few hundred bytes and their pax
headers a few KB, so anything past MAX_EXTENSION_BYTES is refused from a first pass over
the headers (the decompressed stream, member data skipped), before tarfile sees it.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zlib
from pathlib import Path

MAX_EXTENSION_BYTES = 64 * 1024
BLOCK = 512
EXTENSIONS = {b"L": "a long name", b"K": "a long link name", b"x": "a pax header", b"g": "a global pax header"}
COMPRESSED = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))
PAX_SIZE = re.compile(rb"\d+ size=(\d+)\n")


def _opened(archive: Path):
    with open(archive, "rb") as file:
        magic = file.read(6)
    opener = next((opener for prefix, opener in COMPRESSED if magic.startswith(prefix)), open)
    return opener(archive, "rb")


def _header_size(block: bytes) -> int | None:
    """A header block's size field (octal, or GNU base-256), or None if the block is no valid header."""
    stored = block[148:156].split(b"\0", 1)[0].strip()
    try:
        checksum = int(stored or b"-1", 8)
    except ValueError:
        return None
    if checksum != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        return None
    field = block[124:136]
    if field[0] & 0x80:  # base-256, for members over 8 GB
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return None


def oversized_extension(archive: Path) -> str | None:
    """What is too long in the archive's headers ("a long name of 104857600 bytes"), or None.

    Stops at the first block that is no valid header, or at damaged compression: the end,
    or what tarfile will then report.
    """
    try:
        return _scan(archive)
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return None


def _scan(archive: Path) -> str | None:
    with _opened(archive) as stream:
        next_size = None  # a pax header's own size for the member after it
        while len(block := stream.read(BLOCK)) == BLOCK:
            size = _header_size(block)
            if size is None:
                return None
            kind = block[156:157]
            if kind in EXTENSIONS:
                if size > MAX_EXTENSION_BYTES:
                    return f"{EXTENSIONS[kind]} of {size} bytes (at most {MAX_EXTENSION_BYTES} are read)"
                data = stream.read(size)
                stream.read(-size % BLOCK)
                found = PAX_SIZE.search(data) if kind == b"x" else None
                next_size = int(found.group(1)) if found else None
                continue
            size, next_size = (size if next_size is None else next_size), None
            if kind not in (b"5", b"1", b"2", b"3", b"4", b"6"):  # folders, links and devices hold no data
                stream.seek(size + -size % BLOCK, 1)
    return None
