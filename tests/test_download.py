"""`petseg data download` against a local HTTP server serving archives built here."""

import gzip
import hashlib
import io
import struct
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from petseg.data.download import BadArchiveError, DownloadError, download_pets, extract_safely
from petseg.errors import command_line_flag


class _ArchiveHandler(BaseHTTPRequestHandler):
    """Serves server.files; honours Range when server.ranges; drops server.drop[name] first answers half-way."""

    def do_GET(self):
        server = self.server
        name = self.path.lstrip("/")
        server.requests.append((name, self.headers.get("Range")))
        body = server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range") and server.ranges:
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if server.drop.get(name, 0) > 0:
            server.drop[name] -= 1
            payload = payload[: len(payload) // 2]
            self.close_connection = True
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveHandler)
    httpd.files, httpd.drop, httpd.requests, httpd.ranges = {}, {}, [], True
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _tar_gz(entries: dict) -> bytes:
    """{member name: bytes | ('symlink', target)} -> a .tar.gz archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# Incompressible, so that "half-way" is well inside the archive.
PHOTO = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


@pytest.fixture
def archives(server):
    server.files["images.tar.gz"] = _tar_gz({"images/Cat_1.jpg": PHOTO})
    server.files["annotations.tar.gz"] = _tar_gz({"annotations/trimaps/Cat_1.png": b"trimap", "annotations/list.txt": b"Cat_1 1 1 1\n"})
    return {name: hashlib.md5(body).hexdigest() for name, body in server.files.items()}


def _download(server, root, checksums, **options):
    return download_pets(root, base_url=server.url, checksums=checksums, progress=False, retry_wait=0, **options)


def test_downloads_verifies_extracts_and_is_idempotent(server, archives, tmp_path):
    root = _download(server, tmp_path / "pets", archives)
    assert (root / "images" / "Cat_1.jpg").read_bytes() == PHOTO
    assert (root / "annotations" / "list.txt").read_text() == "Cat_1 1 1 1\n"
    assert sorted(p.name for p in root.iterdir()) == [".annotations.tar.gz.done", ".images.tar.gz.done", "annotations", "images"]
    requests = len(server.requests)
    _download(server, root, archives)
    assert len(server.requests) == requests == 2, "a second run must not download again"


def test_dropped_connection_keeps_the_part_and_resumes_with_range(server, archives, tmp_path):
    server.drop["images.tar.gz"] = 1
    root = tmp_path / "pets"
    with pytest.raises(DownloadError, match=r"images\.tar\.gz: download failed .*run again to resume"):
        _download(server, root, archives, retries=0)
    partial = root / "images.tar.gz.part"
    size = len(server.files["images.tar.gz"])
    assert partial.stat().st_size == size // 2
    assert not (root / "images").exists()
    _download(server, root, archives, retries=0)
    assert server.requests[1] == ("images.tar.gz", f"bytes={size // 2}-")
    assert (root / "images" / "Cat_1.jpg").read_bytes() == PHOTO and not partial.exists()


def test_retries_resume_within_one_call(server, archives, tmp_path):
    server.drop["images.tar.gz"] = 2
    _download(server, tmp_path / "pets", archives, retries=2)
    image_requests = [header for name, header in server.requests if name == "images.tar.gz"]
    assert len(image_requests) == 3 and image_requests[0] is None and all(image_requests[1:])
    assert (tmp_path / "pets" / "images" / "Cat_1.jpg").read_bytes() == PHOTO


def test_server_without_range_support_restarts_cleanly(server, archives, tmp_path):
    server.ranges = False
    server.drop["images.tar.gz"] = 1
    _download(server, tmp_path / "pets", archives, retries=1)
    assert (tmp_path / "pets" / "images" / "Cat_1.jpg").read_bytes() == PHOTO


def test_checksum_mismatch_leaves_nothing_extracted(server, archives, tmp_path):
    wrong = {**archives, "images.tar.gz": "0" * 32}
    root = tmp_path / "pets"
    with pytest.raises(DownloadError, match=r"images\.tar\.gz: md5 [0-9a-f]{32} does not match the expected 0{32}"):
        _download(server, root, wrong)
    assert list(root.iterdir()) == [], "no archive, no part file, no half dataset"
    _download(server, root, wrong, verify=False)
    assert (root / "images" / "Cat_1.jpg").read_bytes() == PHOTO


@pytest.mark.parametrize(
    "member, content, reason",
    [("../escaped.txt", b"x", r"'\.\.'"), ("images/../../escaped.txt", b"x", r"'\.\.'"),
     ("/tmp/escaped.txt", b"x", "absolute"), ("images/link", ("symlink", "/etc/passwd"), "links"),
     # A name is echoed cut short: a 60,000-character one does not fill the terminal.
     ("../" + "x" * 60_000, b"x", r"'\.\./x{97}…': .*'\.\.'")],
)  # fmt: skip
def test_archive_escaping_the_root_is_refused_whole(server, tmp_path, member, content, reason):
    server.files["images.tar.gz"] = _tar_gz({"images/Cat_1.jpg": b"fine", member: content})
    root = tmp_path / "data" / "pets"
    with pytest.raises(DownloadError, match=f"refusing to extract .*{reason}"):
        _download(server, root, {"images.tar.gz": None})
    assert not (root / "images").exists() and not (tmp_path / "data" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert list(root.iterdir()) == [], "the refused archive is deleted, so a retry fetches it afresh"


def test_http_error_is_one_line_without_retrying(server, tmp_path):
    with pytest.raises(DownloadError, match=r"images\.tar\.gz: download failed \(HTTP 404"):
        _download(server, tmp_path / "pets", {"images.tar.gz": None}, retries=3)
    assert len(server.requests) == 1


def test_existing_folder_is_replaced_only_with_force(server, archives, tmp_path):
    root = tmp_path / "pets"
    (root / "images").mkdir(parents=True)
    (root / "images" / "mine.txt").write_text("keep me")
    with pytest.raises(DownloadError, match="images already exists.*; move it away, or force replaces it"):
        _download(server, root, archives)
    assert (root / "images" / "mine.txt").read_text() == "keep me"
    _download(server, root, archives, force=True)
    assert sorted(p.name for p in (root / "images").iterdir()) == ["Cat_1.jpg"]


def test_an_archive_that_cannot_be_unpacked_is_deleted_even_without_verification(server, archives, tmp_path):
    good = server.files["images.tar.gz"]
    server.files["images.tar.gz"] = b"<html>mirror error page</html>"
    root = tmp_path / "pets"
    with pytest.raises(DownloadError, match=r"images\.tar\.gz: cannot unpack .*deleted, run again"):
        _download(server, root, archives, verify=False)
    assert list(root.iterdir()) == []
    server.files["images.tar.gz"] = good  # the mirror is fixed: the next run must not reuse the bad file
    _download(server, root, archives, verify=False)
    assert (root / "images" / "Cat_1.jpg").read_bytes() == PHOTO


def test_the_next_run_removes_what_a_killed_unpacking_left(server, archives, tmp_path):
    from tests.test_atomic import dead_pid

    root = tmp_path / "pets"
    left = root / f".images.tar.gz.petseg-tmp-{dead_pid()}-0123abcd"
    (left / "images").mkdir(parents=True)
    (left / "images" / "Cat_1.jpg").write_bytes(b"half")
    _download(server, root, archives)
    assert sorted(p.name for p in root.iterdir()) == [".annotations.tar.gz.done", ".images.tar.gz.done", "annotations", "images"]


def test_not_an_archive_is_a_clear_error(tmp_path):
    (tmp_path / "images.tar.gz").write_bytes(b"<html>mirror error page</html>")
    with pytest.raises(DownloadError, match="images.tar.gz: cannot unpack"):
        extract_safely(tmp_path / "images.tar.gz", tmp_path)


def test_cli_download(server, archives, tmp_path):
    def petseg(*args):
        command = [sys.executable, "-m", "petseg", "data", "download", "--root", str(tmp_path / "pets"), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    # The CLI checks the official md5s, which the test archives do not have.
    refused = petseg("--base-url", server.url)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: ") and "does not match the expected 5c4f3ee8e5d25df40f4fd59a7f44e54c" in refused.stderr
    done = petseg("--base-url", server.url, "--no-verify")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pets" / "images" / "Cat_1.jpg").read_bytes() == PHOTO


def test_a_download_or_an_archive_larger_than_any_dataset_is_stopped(server, archives, tmp_path, monkeypatch):
    import petseg.data.download as download

    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 100_000)  # the test archive is ~300 KB
    with pytest.raises(DownloadError, match=r"images\.tar\.gz: the server sent over .* the download was stopped"):
        _download(server, tmp_path / "pets", {"images.tar.gz": None})
    assert list((tmp_path / "pets").iterdir()) == [] and len(server.requests) == 1  # deleted, not retried
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 10**9)
    monkeypatch.setattr(download, "MAX_UNPACKED_BYTES", 100_000)  # it unpacks to 300 KB: a bomb, to this limit
    with pytest.raises(DownloadError, match=r"images\.tar\.gz: refusing to extract over 0\.0 GB, more than"):
        _download(server, tmp_path / "pets", {"images.tar.gz": None})
    assert list((tmp_path / "pets").iterdir()) == []


def test_an_archive_cannot_mark_another_as_unpacked(server, archives, tmp_path):
    """A top-level `.annotations.tar.gz.done` would have skipped the annotations download."""
    server.files["images.tar.gz"] = _tar_gz({"images/Cat_1.jpg": b"fine", ".annotations.tar.gz.done": b""})
    with pytest.raises(DownloadError, match=r"refusing to extract '\.annotations\.tar\.gz\.done': a name of petseg's"):
        _download(server, tmp_path / "pets", {"images.tar.gz": None, "annotations.tar.gz": None})


@pytest.mark.parametrize("url, words", [
    ("ftp//x", "must be an http://, https:// or file:// URL, got 'ftp//x'"),
    ("", "must be an http://, https:// or file:// URL, got ''"),
    ("http://[::1", "is not a valid URL (Invalid IPv6 URL), got 'http://[::1'"),
    ("http:///images", "must name a server (http://HOST/...), got 'http:///images'"),
])  # fmt: skip
def test_a_base_url_nothing_can_be_fetched_from_is_refused_before_anything_is_made(tmp_path, url, words):
    with pytest.raises(DownloadError) as raised:
        download_pets(tmp_path / "pets", base_url=url, checksums={"images.tar.gz": None}, progress=False, retries=0)
    assert raised.value.worded(command_line_flag) == f"--base-url {words}"
    assert not (tmp_path / "pets").exists()


def test_an_empty_base_url_on_the_command_line_is_a_mistake_not_the_official_server(server, archives, tmp_path,
                                                                                     monkeypatch, capsys):
    import petseg.data.download as download
    from petseg.cli import main

    monkeypatch.setattr(download, "OFFICIAL_BASE_URL", server.url)  # were it used, the test would not go online
    monkeypatch.setattr(sys, "argv", ["petseg", "data", "download", "--root", str(tmp_path / "pets"),
                                      "--base-url", "", "--no-verify"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: an argument is empty (after --base-url)\n"
    assert server.requests == []


def _refused_and_deleted(server, tmp_path, entries: dict, words: str) -> None:
    """The archive is refused as itself at fault: deleted, nothing unpacked, nothing marked done."""
    server.files["images.tar.gz"] = _tar_gz(entries)
    root = tmp_path / "pets"
    with pytest.raises(BadArchiveError) as raised:
        _download(server, root, {"images.tar.gz": None}, retries=0)
    deleted = "the file was deleted, run again to download it afresh"
    assert str(raised.value) == f"{root / 'images.tar.gz'}: {words}; {deleted}"
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("entries, words", [
    ({"images": b"a file", "images/Cat_1.jpg": b"x"},
     "cannot unpack 'images/Cat_1.jpg': it clashes with another member (Not a directory)"),
    ({"images/Cat_1.jpg": b"x", ".": b"x"}, "refusing to extract '.': names no file or folder"),
    ({}, "holds no files; nothing to extract"),
])  # fmt: skip
def test_an_archive_whose_members_cannot_all_be_unpacked_is_a_bad_archive(server, tmp_path, entries, words):
    _refused_and_deleted(server, tmp_path, entries, words)


def test_an_archive_of_more_members_than_any_dataset_is_refused(server, tmp_path, monkeypatch):
    import petseg.data.download as download

    monkeypatch.setattr(download, "MAX_MEMBERS", 10)  # the real limit, 100,000, would take a big archive
    _refused_and_deleted(server, tmp_path, {f"images/{number}.jpg": b"" for number in range(11)},
                         "refusing to extract over 10 members, more than any dataset archive")
    server.files["images.tar.gz"] = _tar_gz({f"images/{number}.jpg": b"" for number in range(10)})
    _download(server, tmp_path / "pets", {"images.tar.gz": None})  # 10 members: within the limit
    assert len(list((tmp_path / "pets" / "images").iterdir())) == 10


def _tar_gz_of(members: list[tuple[tarfile.TarInfo, bytes]], tar_format: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tar_format) as tar:
        for info, content in members:
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _member(name: str, pax: dict | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.pax_headers = pax or {}
    return info


@pytest.mark.parametrize("tar_format, member, words", [
    # tarfile read a long name whole before any check: 800 MB of one letter took a download past 6 GB.
    (tarfile.GNU_FORMAT, _member("images/" + "a" * 2_000_000 + ".jpg"), "a long name of 2000012 bytes"),
    # A long pax header is also searched in quadratic time by Pythons before 3.11.10 (CVE-2024-6232).
    (tarfile.PAX_FORMAT, _member("images/Cat_1.jpg", {"comment": "1" * 300_000}), "a pax header of 300"),
])  # fmt: skip
def test_an_archive_with_a_huge_header_extension_is_refused_before_tarfile_reads_it(server, tmp_path, tar_format,
                                                                                      member, words):
    server.files["images.tar.gz"] = _tar_gz_of([(member, b"x")], tar_format)
    root = tmp_path / "pets"
    with pytest.raises(BadArchiveError) as raised:
        _download(server, root, {"images.tar.gz": None}, retries=0)
    message = str(raised.value)
    assert message.startswith(f"{root / 'images.tar.gz'}: refusing to extract an archive with {words}")
    assert "(at most 65536 are read)" in message and len(message) < 300
    assert list(root.iterdir()) == []


def test_header_extensions_of_real_sizes_pass_and_every_member_is_looked_at(tmp_path):
    from petseg.data.tar_headers import oversized_extension

    def scanned(members, tar_format):
        path = tmp_path / "a.tar.gz"
        path.write_bytes(_tar_gz_of(members, tar_format))
        return oversized_extension(path)

    long_but_real = _member("images/" + "b" * 300 + ".jpg")
    assert scanned([(long_but_real, PHOTO[:1000]), (_member("images/c.jpg"), PHOTO[:5000])], tarfile.GNU_FORMAT) is None
    # A pax header that sets its member's size (as for members over 8 GB): the scan follows it to the next header.
    sized = _member("images/d.jpg", {"size": "3000", "comment": "x" * 1000})
    huge_name_after = _member("images/" + "e" * 100_000 + ".jpg")
    assert "a pax header of" in scanned([(sized, PHOTO[:3000]), (huge_name_after, b"y")], tarfile.PAX_FORMAT)
    assert scanned([(_member("images/f.jpg"), PHOTO[:3000])], tarfile.USTAR_FORMAT) is None


# Archives written block by block, for the headers tarfile writes for no one: Solaris 'X' pax headers, checksums
# over signed bytes (as old Sun and NeXT tars did), base-256 negative sizes, GNU sparse files.
def _header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, *, signed: bool = False, uname: str = "",
            size_field: bytes = b"") -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.uname = size, kind, uname
    block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    if size_field:
        block[124:136] = size_field
    return _checksummed(block, signed)


def _checksummed(block: bytearray, signed: bool = False) -> bytes:
    block[148:156] = b" " * 8
    checksum = 256 + sum(struct.unpack("148b8x356b" if signed else "148B8x356B", block))
    block[148:156] = b"%06o\0 " % checksum
    return bytes(block)


def _negative(size: int) -> bytes:
    """A size field of -size, in GNU base-256."""
    return b"\xff" + (256**11 - size).to_bytes(11, "big")


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def _file(name: str, content: bytes = b"x", **header) -> bytes:
    return _header(name, len(content), **header) + _padded(content)


def _extension(kind: bytes, content: bytes) -> bytes:
    return _header("././@LongLink", len(content), kind) + _padded(content)


def _pax_header(records: dict, kind: bytes = tarfile.XHDTYPE) -> bytes:
    return tarfile.TarInfo._create_pax_generic_header(records, kind, "utf-8")


def _raw_tar_gz(*blocks: bytes) -> bytes:
    return gzip.compress(b"".join(blocks) + b"\0" * 1024)


def _sparse_header(name: str) -> bytes:
    """An old GNU sparse file's header: one region of 1 byte at 0, no extension blocks."""
    block = bytearray(_header(name, 1, tarfile.GNUTYPE_SPARSE))
    block[386:410] = b"%011o\0%011o\0" % (0, 1)
    block[483:495] = b"%011o\0" % 1
    return _checksummed(block)


@pytest.mark.parametrize("blocks, words", [
    # A 972 KB archive with a 1 GB Solaris 'X' header (tarfile reads it as a pax header) took 1 GB.
    ([_extension(tarfile.SOLARIS_XHDTYPE, b"\0" * 70_000)], "a Solaris pax header of 70000 bytes (at most 65536 are"),
    # Digits are searched in quadratic time (CVE-2024-6232): 150,000 of them held a core for 22 s.
    ([_extension(tarfile.SOLARIS_XHDTYPE, b"1" * 20_000)], "a Solaris pax header holding a run of 20000 digits"),
    ([_pax_header({"comment": "1" * 20_000})], "a pax header holding a run of 20000 digits"),
    # Without its '=', a record's keyword runs on to the header's last '=': 64 KB of this took 1 GB.
    ([_extension(tarfile.XHDTYPE, b"2 " * 2000 + b"=")], "a pax header that is not well-formed records (at byte 0)"),
    # tarfile accepts a checksum over signed bytes: the scan stopped there, and a 1 GB long name after took 2 GB.
    ([_file("images/a.jpg", signed=True, uname="café"), _extension(tarfile.GNUTYPE_LONGNAME, b"b" * 70_000)],
     "a long name of 70000 bytes"),
    # A file whose name ends in '/' is a folder to tarfile, its size no data: the scan skipped it, and lost its way.
    ([_header("images/folder/", 10**6, tarfile.AREGTYPE), _extension(tarfile.GNUTYPE_LONGNAME, b"b" * 70_000)],
     "a long name of 70000 bytes"),
    # A negative size (base-256) made tarfile read with a negative length: a ValueError traceback.
    ([_header("././@LongLink", kind=tarfile.GNUTYPE_LONGNAME, size_field=_negative(4096))],
     "a long name of -4096 bytes"),
    # Each header of a member is read a level deeper: 400 of them were a RecursionError traceback.
    ([_extension(tarfile.GNUTYPE_LONGNAME, b"images/a.jpg")] * 400, "over 16 headers for one member"),
    # tarfile reads a sparse file's map whole, and a bad one is a ValueError traceback.
    ([_sparse_header("images/a.jpg"), _padded(b"x")], "a GNU sparse file"),
    ([_pax_header({"GNU.sparse.size": "junk"})], "a GNU sparse file"),
])  # fmt: skip
def test_headers_tarfile_would_choke_on_are_refused_before_it_reads_them(server, tmp_path, blocks, words):
    server.files["images.tar.gz"] = _raw_tar_gz(*blocks, _file("images/b.jpg"))
    root = tmp_path / "pets"
    with pytest.raises(BadArchiveError) as raised:
        _download(server, root, {"images.tar.gz": None}, retries=0)
    message = str(raised.value)
    assert message.startswith(f"{root / 'images.tar.gz'}: refusing to extract an archive with {words}")
    assert "\n" not in message and len(message) < 300
    assert list(root.iterdir()) == []


def test_headers_of_every_kind_that_are_fine_still_unpack(server, tmp_path):
    server.files["images.tar.gz"] = _raw_tar_gz(
        _file("images/signed.jpg", b"signed", signed=True, uname="café"),
        _pax_header({"path": "images/solaris.jpg"}, tarfile.SOLARIS_XHDTYPE), _file("images/renamed", b"solaris"),
        _pax_header({"comment": "a" * 60_000, "size": "3"}), _header("images/sized.jpg", 2000) + _padded(b"pax"),
        _extension(tarfile.GNUTYPE_LONGNAME, b"images/" + b"c" * 200 + b".jpg"), _file("images/short", b"long"),
    )
    root = _download(server, tmp_path / "pets", {"images.tar.gz": None})
    unpacked = {path.name: path.read_bytes() for path in (root / "images").iterdir()}
    assert unpacked == {"signed.jpg": b"signed", "solaris.jpg": b"solaris", "sized.jpg": b"pax",
                        "c" * 200 + ".jpg": b"long"}


def test_a_negative_size_that_would_send_tarfile_back_round_forever_is_refused(tmp_path):
    from petseg.data.tar_headers import oversized_extension

    archive = tmp_path / "images.tar.gz"
    back = _negative(1024)  # from its data back to the header before it
    archive.write_bytes(_raw_tar_gz(_file("images/a.jpg"), _header("images/b.jpg", size_field=back)))
    assert oversized_extension(archive) == "a member of negative size"


def test_names_and_pax_records_that_every_member_keeps_are_bounded_over_the_archive(tmp_path):
    from petseg.data.tar_headers import oversized_extension

    # tarfile gives every member its own copy of the global records: one header of 35 KB and 2,000 members took 200 MB.
    archive = tmp_path / "images.tar.gz"
    records = _pax_header({f"k{number}": "" for number in range(5000)}, tarfile.XGLTYPE)  # 54 KB, within the limit
    members = [_file(f"images/{number}.jpg") for number in range(200)]
    archive.write_bytes(_raw_tar_gz(records, *members))
    assert oversized_extension(archive) == "over 67,108,864 bytes of names and pax records kept for its members"
    archive.write_bytes(_raw_tar_gz(records, *members[:10]))
    assert oversized_extension(archive) is None


def test_every_header_type_that_makes_tarfile_read_past_it_is_checked():
    """Probes tarfile's own dispatch: a type not handled as a member's own header makes it read on."""
    from petseg.data.tar_headers import READ_WHOLE

    class Probe(tarfile.TarInfo):
        def _proc_builtin(self, tar):
            return self

    reading_on = set()
    for code in range(256):
        probe = Probe()
        probe.type = bytes([code])
        try:
            probe._proc_member(None)  # anything but _proc_builtin reaches for an archive (or sparse map) it lacks
        except AttributeError:
            reading_on.add(probe.type)
    assert reading_on == set(READ_WHOLE) | {tarfile.GNUTYPE_SPARSE}
