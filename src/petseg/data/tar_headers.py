"""Refuse tar archives whose headers tarfile would choke on, before tarfile reads them for real.

tarfile reads some headers whole into memory while it reads the member they belong to,
before any check of that member can run: GNU long names and link names ('L', 'K') and
pax headers ('x', 'g' and Solaris 'X'). A 778 KB .tar.gz whose long name was 800 MB of
one letter took a download past 6 GB, a 2.4 MB one with an 'X' header 2.5 GB. Python
3.11.7's tarfile also parses pax headers with patterns that backtrack: a run of digits
is searched in time quadratic in its length (CVE-2024-6232: 300,000 digits held a core
for 1 minute 45), and in a record without its '=' the keyword runs on to the next '=' of
the header, every record keeping its own copy (64 KB of "2 2 2 ... =" took 1 GB). Real
long names are a few hundred bytes, and real pax headers a few records.

So a first pass reads the archive with tarfile itself, which decides by its own parsing
what is a header (checksums signed or unsigned, sizes octal or base-256, which header
belongs to which member), through hooks that refuse, before tarfile reads on:
- a header it reads whole of over MAX_EXTENSION_BYTES, or of a negative size;
- a pax header that is not records "<length> <keyword>=<value>" each ending in a newline
  within its length, or that holds a run of over MAX_DIGITS digits;
- a GNU sparse file: tarfile reads its map into a list block by block (each 512 bytes of
  map cost 2.5 KB) or into one string line by line; no dataset archive holds one;
- over MAX_CHAIN headers for one member: tarfile reads each one a level deeper;
and, after each member, a negative size (tarfile would step back to a header it has read
and go round forever) or over MAX_KEPT_BYTES of names and pax records over all members
(tarfile gives each member its own copy of every pax record in force).
"""

from __future__ import annotations

import lzma
import re
import tarfile
import zlib
from pathlib import Path

MAX_EXTENSION_BYTES = 64 * 1024
MAX_DIGITS = 32  # sizes and times take at most 20
MAX_CHAIN = 16  # real members have at most 4 headers: a long name, a long link name, a pax header, their own
MAX_KEPT_BYTES = 64 * 2**20  # the official archives' names come to about 1 MB
PAX_RECORD_BYTES = 100  # what a pax record kept costs in Python objects beyond its text
# The header types tarfile reads whole: TarInfo._proc_member hands them to _proc_gnulong and _proc_pax.
READ_WHOLE = {
    tarfile.GNUTYPE_LONGNAME: "a long name",
    tarfile.GNUTYPE_LONGLINK: "a long link name",
    tarfile.XHDTYPE: "a pax header",
    tarfile.XGLTYPE: "a global pax header",
    tarfile.SOLARIS_XHDTYPE: "a Solaris pax header",
}
_DIGIT_RUN = re.compile(rb"\d{%d}\d*" % (MAX_DIGITS + 1))
_RECORD_LENGTH = re.compile(rb"(\d+) ")  # how tarfile's "(\d+) ([^=]+)=" begins


class _Refused(Exception):
    """What the archive holds that tarfile must not read."""


def oversized_extension(archive: Path) -> str | None:
    """What the archive holds that tarfile must not read ("a long name of 104857600 bytes (...)"), or None.

    None too when tarfile cannot read the archive: unpacking it then fails the same way, at
    the same place, having read nothing more than this pass did.
    """
    try:
        with _CheckingTarFile.open(archive, "r:*") as tar:
            kept = 0
            while (member := tar.next()) is not None:
                tar.members.clear()  # only the headers matter here: keep memory flat over a flood of members
                tar.chain = 0
                if member.size < 0 or tar.offset < tar.fileobj.tell():
                    return "a member of negative size"
                kept += len(member.name) + len(member.linkname)
                kept += sum(len(key) + len(value) + PAX_RECORD_BYTES for key, value in member.pax_headers.items())
                if kept > MAX_KEPT_BYTES:
                    return f"over {MAX_KEPT_BYTES:,} bytes of names and pax records kept for its members"
    except _Refused as refusal:
        return str(refusal)
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError):
        return None
    return None


class _CheckedTarInfo(tarfile.TarInfo):
    """tarfile's own header, checked before tarfile reads what follows it."""

    def _proc_member(self, tar):
        tar.chain += 1
        if tar.chain > MAX_CHAIN:
            raise _Refused(f"over {MAX_CHAIN} headers for one member")
        if self.type in READ_WHOLE and not 0 <= self.size <= MAX_EXTENSION_BYTES:
            raise _Refused(f"{READ_WHOLE[self.type]} of {self.size} bytes (at most {MAX_EXTENSION_BYTES} are read)")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Refused("a GNU sparse file")
        return super()._proc_member(tar)

    def _proc_pax(self, tar):
        stream = tar.fileobj
        records = stream.read(self._block(self.size))  # at most MAX_EXTENSION_BYTES, checked above
        _check_pax(records, READ_WHOLE[self.type])
        tar.fileobj = _GivenBack(records, stream)  # for tarfile to read them again
        try:
            return super()._proc_pax(tar)
        finally:
            tar.fileobj = stream


class _CheckingTarFile(tarfile.TarFile):
    tarinfo = _CheckedTarInfo
    chain = 0  # headers read since the last member


def _check_pax(records: bytes, what: str) -> None:
    """Refuse pax records tarfile would parse in more than linear time and memory."""
    if run := _DIGIT_RUN.search(records):
        raise _Refused(f"{what} holding a run of {len(run[0])} digits (at most {MAX_DIGITS})")
    position = 0
    while length := _RECORD_LENGTH.match(records, position):  # where tarfile reads a record, it must be whole
        record = records[position:position + int(length[1])]
        keyword_start = length.end() - position
        if len(record) != int(length[1]) or not record.endswith(b"\n") or b"=" not in record[keyword_start:]:
            raise _Refused(f"{what} that is not well-formed records (at byte {position})")
        if record[keyword_start:].startswith(b"GNU.sparse."):
            raise _Refused("a GNU sparse file")
        position += len(record)


class _GivenBack:
    """A stream with bytes read from it given back, to be read again first."""

    def __init__(self, data: bytes, stream):
        self.data, self.stream = data, stream

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            data, self.data = self.data, b""
            return data + self.stream.read()
        data, self.data = self.data[:size], self.data[size:]
        return data + self.stream.read(size - len(data))

    def tell(self) -> int:
        return self.stream.tell() - len(self.data)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset -= len(self.data)
        self.data = b""
        return self.stream.seek(offset, whence)
