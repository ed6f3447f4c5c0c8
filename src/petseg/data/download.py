"""Fetch and unpack the Oxford-IIIT Pet archives, safely and resumably.

Each archive is downloaded to `<name>.part` (an interrupted download resumes with an
HTTP Range request), checked against its md5, checked member by member (nothing may
land outside the root: no absolute paths, no `..`, no links or devices), unpacked
into a hidden folder and only then moved into place. A `.<name>.done` marker makes a
second run a no-op. An archive that fails its md5 or cannot be unpacked is deleted, so
the next run downloads it afresh; that run also removes the unpacking folders
(`.<name>.petseg-tmp-*`) a killed run left behind. Before tarfile reads an archive, a
first pass, tarfile's own reading of its headers with checks added (tar_headers.py),
refuses what tarfile would read whole or parse at length: long names and pax headers
over 64 KB, malformed pax records, sparse files.
"""

from __future__ import annotations

import errno
import lzma
import hashlib
import http.client
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Mapping

from petseg import __version__
from petseg.atomic import TEMPORARY_MARK, make_temporary_folder, remove_stale_temporaries
from petseg.data.tar_headers import oversized_extension
from petseg.errors import PetsegError, quoted

OFFICIAL_BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"
OFFICIAL_CHECKSUMS = {
    "images.tar.gz": "5c4f3ee8e5d25df40f4fd59a7f44e54c",
    "annotations.tar.gz": "95a8c909bbe2e81eed6a22bccdf3f68f",
}
_CHUNK = 1 << 16
# The official archives are 755 MB and 19 MB, and unpack to about as much (JPEGs and PNGs
# do not compress). Far above that, a server or an archive is hostile: a 2 MB .tar.gz
# held a 2 GB member of zeros, and a server without Content-Length streams forever.
MAX_DOWNLOAD_BYTES = 4 * 2**30
MAX_UNPACKED_BYTES = 8 * 2**30
# images.tar.gz holds about 7,400 members and annotations.tar.gz about 22,000. Each member
# listed costs memory even when it is empty: 2,000,000 empty ones in 4.4 MB took 786 MB.
MAX_MEMBERS = 100_000
# What urllib fetches and this module was written for: HTTP(S) servers and local mirrors.
URL_SCHEMES = ("http", "https", "file")
# Errors that unpacking into a fresh, empty folder meets only through the archive's own
# names: a member below another that is a file, a file named like a folder, a name too long.
# Any other (a full disk, no permission) is the disk's, and the archive is kept.
_ARCHIVE_ERRNOS = {errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG}
# Client errors other than these will not go away by asking again.
_RETRYABLE_HTTP = {408, 425, 429}


class DownloadError(PetsegError):
    """A network failure, a bad checksum or an unsafe archive."""


class BadArchiveError(DownloadError):
    """The archive itself is at fault (corrupt, truncated, unsafe members): fetching it again may help."""


class TooLargeError(DownloadError):
    """More bytes than any archive petseg downloads: not retried."""


def download_pets(
    root: str | Path,
    *,
    base_url: str = OFFICIAL_BASE_URL,
    checksums: Mapping[str, str | None] = OFFICIAL_CHECKSUMS,
    verify: bool = True,
    force: bool = False,
    progress: bool = True,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
) -> Path:
    """Download and unpack each archive named in `checksums` ({file name: md5}) into `root`."""
    check_base_url(base_url)
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{root}: cannot create the download folder ({error.strerror})") from None
    remove_stale_temporaries(root)
    for name, md5 in checksums.items():
        marker = root / f".{name}.done"
        if marker.is_file():
            continue
        archive = fetch(base_url.rstrip("/") + "/" + name, root / name, progress=progress,
                        retries=retries, retry_wait=retry_wait, timeout=timeout)  # fmt: skip
        if verify and md5:
            actual = file_md5(archive)
            if actual != md5.lower():
                archive.unlink()
                raise DownloadError(
                    f"{archive}: md5 {actual} does not match the expected {md5}; the file was deleted, "
                    "run again to download it afresh (or --no-verify for a mirror with other archives)"
                )
        try:
            extract_safely(archive, root, force=force)
        except BadArchiveError as error:
            archive.unlink(missing_ok=True)
            raise BadArchiveError(f"{error}; the file was deleted, run again to download it afresh") from None
        marker.write_text(f"{md5 or ''}\n")
        archive.unlink()
    return root


def check_base_url(url: str) -> None:
    """Refuse, before anything is fetched, a base URL that names no server or folder to fetch from."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # a port that is not a number raises here
    except ValueError as error:  # "http://[::1": an unclosed IPv6 address
        raise DownloadError(f"is not a valid URL ({error}), got {quoted(url)}", option="base_url") from None
    if parts.scheme.lower() not in URL_SCHEMES:
        raise DownloadError(f"must be an http://, https:// or file:// URL, got {quoted(url)}",
                            option="base_url")
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise DownloadError(f"must name a server (http://HOST/...), got {quoted(url)}", option="base_url")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, destination: Path, *, progress: bool = True, retries: int = 3,
          retry_wait: float = 2.0, timeout: float = 60.0) -> Path:  # fmt: skip
    """Download `url` to `destination`, resuming `destination.part`; retry dropped connections."""
    if destination.is_file():
        return destination
    partial = destination.with_name(destination.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, partial, progress=progress, timeout=timeout)
            os.replace(partial, destination)
            return destination
        except urllib.error.HTTPError as error:
            reason = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500 and error.code not in _RETRYABLE_HTTP:
                break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = str(getattr(error, "reason", None) or error) or type(error).__name__
        if attempt < retries:
            time.sleep(retry_wait * 2**attempt)
    kept = f"; {partial.name} is kept, run again to resume" if partial.is_file() else ""
    raise DownloadError(f"{url}: download failed ({reason}){kept}")


def _fetch_once(url: str, partial: Path, *, progress: bool, timeout: float) -> None:
    offset = partial.stat().st_size if partial.is_file() else 0
    headers = {"User-Agent": f"petseg/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # the range starts at the end: the partial file is already complete
        raise
    with response:
        resumed = offset and response.status == 206 and response.headers.get("Content-Range", "").startswith(
            f"bytes {offset}-"
        )
        if not resumed:
            offset = 0  # the server sent the whole file again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        from tqdm import tqdm

        with open(partial, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=partial.name.removesuffix(".part"), disable=None if progress else True, leave=False,
        ) as bar:  # fmt: skip
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
                if out.tell() > MAX_DOWNLOAD_BYTES:
                    break
    if partial.stat().st_size > MAX_DOWNLOAD_BYTES:
        partial.unlink()
        raise TooLargeError(f"{url}: the server sent over {MAX_DOWNLOAD_BYTES // 2**30} GB, more than any "
                            "dataset archive; the download was stopped and deleted")
    received = partial.stat().st_size
    if total is not None and received < total:
        raise http.client.IncompleteRead(b"", total - received)


def _refusal(member: tarfile.TarInfo) -> str | None:
    """Why a member may not be extracted, or None when it is a plain file or folder inside the root."""
    path = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or path.is_absolute() or (path.parts and ":" in path.parts[0]):
        return "absolute path"
    if ".." in path.parts:
        return "path leaves the folder ('..')"
    top = path.parts[0] if path.parts else ""
    if top.endswith((".done", ".tar.gz", ".part")) or TEMPORARY_MARK in top:
        # `.annotations.tar.gz.done` at the top would mark that archive as unpacked.
        return "a name of petseg's own download files"
    if not path.parts:  # "" or ".": the folder unpacked into, not a file in it
        return "names no file or folder"
    if member.issym() or member.islnk():
        return "links are not allowed"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or folder"
    return None


def extract_safely(archive: Path, root: Path, *, force: bool = False) -> None:
    """Unpack `archive` into `root`, all or nothing; refuse the whole archive if one member is unsafe."""
    try:
        too_long = oversized_extension(archive)
        if too_long:
            raise BadArchiveError(f"{archive}: refusing to extract an archive with {too_long}")
        with tarfile.open(archive, "r:*") as tar:
            members = _checked_members(tar, archive)
            staging = make_temporary_folder(root / archive.name)
            try:
                _unpack(tar, members, staging, archive)
                _move_into_place(staging, root, archive, force)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0].rstrip(":")  # tarfile lists every method tried
        raise BadArchiveError(f"{archive}: cannot unpack ({reason}: not a complete tar archive)") from None
    except OSError as error:  # the disk, not the archive: keep it for the next try
        raise DownloadError(f"{archive}: cannot unpack ({error})") from None


def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, once every one passed `_refusal` and together they are not too many or too large.

    Read one at a time, so that a flood of members is refused at MAX_MEMBERS, not listed in full first.
    """
    members: list[tarfile.TarInfo] = []
    unpacked = 0
    while (member := tar.next()) is not None:
        if len(members) == MAX_MEMBERS:
            raise BadArchiveError(f"{archive}: refusing to extract over {MAX_MEMBERS:,} members, more than "
                                  "any dataset archive")
        reason = _refusal(member)
        if reason:
            raise BadArchiveError(f"{archive}: refusing to extract {quoted(member.name)}: {reason}")
        unpacked += member.size
        if unpacked > MAX_UNPACKED_BYTES:
            raise BadArchiveError(f"{archive}: refusing to extract over {unpacked / 2**30:.1f} GB, more than "
                                  f"any dataset archive ({MAX_UNPACKED_BYTES // 2**30} GB)")
        members.append(member)
    if not any(member.isfile() for member in members):  # marked done, it would never be fetched again
        raise BadArchiveError(f"{archive}: holds no files; nothing to extract")
    return members


def _unpack(tar: tarfile.TarFile, members: list[tarfile.TarInfo], staging: Path, archive: Path) -> None:
    try:
        tar.extractall(staging, members=members, filter="data")
    except OSError as error:
        if error.errno not in _ARCHIVE_ERRNOS:
            raise
        member = quoted(os.path.relpath(error.filename, staging)) if error.filename else "a member"
        raise BadArchiveError(f"{archive}: cannot unpack {member}: it clashes with another member "
                              f"({error.strerror})") from None


def _move_into_place(staging: Path, root: Path, archive: Path, force: bool) -> None:
    entries = sorted(staging.iterdir())
    clashes = [root / entry.name for entry in entries if (root / entry.name).exists()]
    if clashes and not force:
        raise DownloadError(f"{clashes[0]} already exists and was not unpacked from {archive.name}",
                            advice="move it away, or {force} replaces it")
    for entry in entries:
        target = root / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)
