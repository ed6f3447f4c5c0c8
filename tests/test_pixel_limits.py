"""The pixel limit holds before any decoding, for every way an image comes in.

Two independent proofs: a decoder spy (Pillow's `load`, which every decode goes
through, must never run for an image over the limit) and real decompression bombs
decoded in a child process whose peak memory is measured. Both fail if the size check
moves after `image.load()`.
"""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from petseg.data.decode import load_rgb
from petseg.errors import ImageError, PetsegError

# A peak this high means the bomb was decoded (13000x13000 RGB alone is 507 MB).
PEAK_MEMORY_LIMIT_MB = 500
BOMB_SIDE = 13_000  # 169 megapixels: over petseg's 100, under Pillow's own error threshold (179)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(side: int, pixel_data: bytes) -> bytes:
    """An 8-bit RGB side x side PNG around already-compressed pixel data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixel_data) + png_chunk(b"IEND", b"")


def png_bomb(path: Path, side: int = BOMB_SIDE) -> Path:
    """A black side x side RGB PNG compressed row by row (a few hundred KB, never held in memory)."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * side)  # filter byte 0 + black pixels
    path.write_bytes(png_bytes(side, b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every call of Pillow's pixel loading (Image.load / ImageFile.load), by image size."""
    calls: list[str] = []
    Image.init()  # importing every plugin builds a 1x256 palette image (PalmImagePlugin): not a decode of ours
    for owner in (Image.Image, ImageFile.ImageFile):
        original = owner.load

        def spy(self, _original=original):
            calls.append(f"{self.width}x{self.height}")
            return _original(self)

        monkeypatch.setattr(owner, "load", spy)
    return calls


def small_png(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(path)
    return path


SOURCES = {
    "path": lambda path: path,
    "bytes": lambda path: path.read_bytes(),
    "file object": lambda path: open(path, "rb"),
    "PIL image": lambda path: Image.open(path),  # lazy: the caller's image is still undecoded
}


@pytest.mark.parametrize("kind", SOURCES)
def test_an_image_over_the_limit_is_never_decoded(tmp_path, decodes, kind):
    source = SOURCES[kind](small_png(tmp_path))
    decodes.clear()  # writing the test photo decoded it
    with pytest.raises(ImageError, match=r"50x40 is 2000 pixels, over the limit of 1999; raise max_pixels$"):
        load_rgb(source, max_pixels=1999)
    assert decodes == [], f"{kind}: pixels were decoded before the limit was checked"
    assert load_rgb(SOURCES[kind](small_png(tmp_path)), max_pixels=2000).shape == (40, 50, 3)
    assert decodes, "the spy must see decoding when the image is within the limit"


@pytest.mark.parametrize("kind", SOURCES)
def test_remove_background_checks_before_decoding(tmp_path, decodes, kind):
    from petseg.inference import remove_background

    source = SOURCES[kind](small_png(tmp_path))
    decodes.clear()
    with pytest.raises(ImageError, match="over the limit"):
        remove_background(source, segmenter=object(), max_pixels=1999)
    assert decodes == []


def test_arrays_are_held_to_the_limit_too():
    from petseg.inference.segmenter import as_photo

    with pytest.raises(ImageError, match="image array: 50x40 .* over the limit"):
        as_photo(np.zeros((40, 50, 3), np.uint8), max_pixels=1999)
    assert as_photo(np.zeros((40, 50, 3), np.uint8), max_pixels=2000).shape == (40, 50, 3)



@pytest.mark.parametrize("width, height", [(1, 5_000), (5_000, 1), (30, 3_001)])
@pytest.mark.parametrize("kind", SOURCES)
def test_a_strip_is_refused_before_decoding_even_without_a_pixel_limit(tmp_path, decodes, kind, width, height):
    # A 1 x 5,000,000 PNG (a few KB) took 48 s to cut out: the band is sized in model pixels.
    path = tmp_path / "strip.png"
    Image.new("RGB", (width, height)).save(path)
    decodes.clear()
    with pytest.raises(ImageError, match=rf"{width}x{height} is not a photo's shape \(one side is over 100 "):
        load_rgb(SOURCES[kind](path), max_pixels=None)
    assert decodes == []


@pytest.mark.parametrize("shape", [(3_001, 30, 3), (30, 3_001), (1, 101, 3)])
def test_arrays_of_no_photo_shape_are_refused(shape):
    from petseg.inference.segmenter import as_photo

    with pytest.raises(ImageError, match=r"image array: .* is not a photo's shape"):
        as_photo(np.zeros(shape, np.uint8), max_pixels=None)


@pytest.mark.parametrize("width, height", [(1, 100), (100, 1), (3_000, 30)])
def test_a_panorama_up_to_100_to_1_is_a_photo(width, height):
    from petseg.inference.segmenter import as_photo

    assert as_photo(np.zeros((height, width, 3), np.uint8)).shape == (height, width, 3)

def test_an_upload_over_the_limit_is_never_decoded(tmp_path, decodes, toy_model_file):
    from fastapi.testclient import TestClient

    from petseg.server import create_app

    upload = small_png(tmp_path).read_bytes()
    decodes.clear()
    with TestClient(create_app(toy_model_file, max_pixels=1999)) as client:
        response = client.post("/api/cutout", files={"file": ("photo.png", upload, "application/octet-stream")})
    assert response.status_code == 400 and "over the limit" in response.text
    assert "50x40" not in decodes


def test_the_server_and_serve_default_to_50_megapixels(tmp_path, decodes, toy_model_file):
    """Unconfigured, a server refuses a photo just over 50 MP unread (one at 50 MP peaks
    near 1 GB in a cutout: the limit is what keeps a server's memory bounded)."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from petseg.cli import app
    from petseg.server import create_app

    side = 7072  # 50,013,184 pixels; only the header is ever read
    with TestClient(create_app(toy_model_file)) as client:
        response = client.post("/api/cutout", files={"file": ("big.png", png_bytes(side, b""), "image/png")})
    assert response.status_code == 400, response.text
    # Both round to 50 megapixels, so the message counts pixels instead.
    assert f"big.png: {side}x{side} is 50013184 pixels, over the limit of 50000000" in response.text
    assert decodes == []
    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--max-pixels\b.*\[default: 50000000\]", help_text), help_text


def test_importing_petseg_leaves_pillows_own_limit_alone():
    code = (
        "from PIL import Image; before = Image.MAX_IMAGE_PIXELS\n"
        "import petseg.inference, petseg.data.decode, petseg.server, petseg.cli\n"
        "print(before == Image.MAX_IMAGE_PIXELS is not None)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


# Peak memory of the child itself: VmHWM is per address space, so it starts afresh at exec,
# whereas getrusage's ru_maxrss carries over the parent's peak (here a pytest with torch).
PEAK_MEMORY_CODE = """
def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
"""

BOMB_CHILD = PEAK_MEMORY_CODE + """
import io, json, sys
from PIL import Image
from petseg.data.decode import load_rgb
from petseg.errors import PetsegError

path, kind = sys.argv[1], sys.argv[2]
source = {"path": path, "bytes": open(path, "rb").read(), "PIL image": Image.open(path) if kind == "PIL image" else None,
          "file object": open(path, "rb")}[kind]
try:
    load_rgb(source)
    error = None
except PetsegError as refused:
    error = str(refused)
print(json.dumps({"error": error, "peak_mb": peak_mb()}))
"""


@pytest.mark.parametrize("kind", SOURCES)
def test_a_decompression_bomb_is_refused_in_one_line_with_little_memory(bomb, kind):
    """A 169-megapixel PNG of a few hundred KB, at the default limit, in a fresh process."""
    assert bomb.stat().st_size < 2_000_000
    child = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(bomb), kind], capture_output=True, text=True, timeout=300)
    result = json.loads(child.stdout)
    assert result["error"] is not None and "\n" not in result["error"], child.stderr
    assert f"{BOMB_SIDE}x{BOMB_SIDE} is 169 megapixels, over the limit of 100" in result["error"]
    assert result["peak_mb"] < PEAK_MEMORY_LIMIT_MB, result


def png_with_exif(path: Path, exif: bytes) -> Path:
    """A small PNG with `exif` as its eXIf chunk, before the pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(buffer, "PNG")
    png = buffer.getvalue()
    at = png.index(b"IDAT") - 4
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    path.write_bytes(png[:at] + chunk + png[at:])
    return path


def test_an_exif_block_of_millions_of_numbers_is_not_unpacked(tmp_path):
    """A 16 MB EXIF (orientation 6 and one tag of 8 million 16-bit numbers) took decoding to 1.7 GB."""
    count = 8_000_000
    entries = struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x9999, 3, count, 8 + 2 + 24 + 4)
    exif = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + struct.pack("<I", 0) + b"\x07" * (2 * count)
    path = png_with_exif(tmp_path / "exif-bomb.png", exif)
    child = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(path), "path"], capture_output=True, text=True,
                           timeout=300)
    result = json.loads(child.stdout)
    assert result["error"] is None, result  # the photo itself is fine: it loads, unturned
    assert result["peak_mb"] < 200, result


def tiff_of_strips(rows: int, order: str = "<") -> bytes:
    """A classic TIFF, 1 pixel wide and `rows` tall, one strip per row; every strip's offset and
    byte count point at the table itself (the file is 4 bytes a row)."""
    def entry(tag, kind, count, value):
        return struct.pack(order + "HHII", tag, kind, count, value)

    table = struct.pack(order + "I", 8) * rows
    entries = [entry(256, 4, 1, 1), entry(257, 4, 1, rows), entry(258, 3, 1, 8 << (16 if order == ">" else 0)),
               entry(262, 3, 1, 1 << (16 if order == ">" else 0)), entry(273, 4, rows, 8), entry(278, 4, 1, 1),
               entry(279, 4, rows, 8)]
    directory = struct.pack(order + "H", len(entries)) + b"".join(entries) + struct.pack(order + "I", 0)
    return {"<": b"II", ">": b"MM"}[order] + struct.pack(order + "HI", 42, 8 + len(table)) + table + directory


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiff_of_millions_of_strips_is_refused_before_pillow_unpacks_them(tmp_path, order):
    """4 million one-row strips (16 MB) took opening to 1.45 GB and 17 s: refused from the header."""
    path = tmp_path / "strips.tiff"
    path.write_bytes(tiff_of_strips(4_000_000, order))
    for kind in ("path", "bytes"):
        child = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(path), kind], capture_output=True, text=True,
                               timeout=300)
        result = json.loads(child.stdout)
        assert result["error"] == (f"{path if kind == 'path' else '<bytes>'}: a TIFF in 4000000 strips or tiles, "
                                   "over 400000 (each costs memory before the image's size can be checked; photos "
                                   "have at most a few thousand)"), result
        assert result["peak_mb"] < 200, result


@pytest.mark.parametrize("options", [{}, {"big_tiff": True}, {"compression": "tiff_deflate"}])
def test_tiff_pieces_are_counted_as_pillow_reads_them(options):
    from petseg.data.tiff_pieces import count_pieces

    buffer = io.BytesIO()
    Image.fromarray(np.arange(300 * 200 * 3, dtype=np.uint8).reshape(200, 300, 3)).save(buffer, "TIFF", **options)
    buffer.seek(5)
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        assert count_pieces(buffer) == len(image.tag_v2[273])
    assert buffer.tell() == 5  # the caller's position is kept
    small = io.BytesIO(tiff_of_strips(1000, ">"))
    with Image.open(small) as image:
        assert count_pieces(small) == len(image.tag_v2[273]) == 1000
    for not_a_tiff in (b"", b"II*\x00", b"\x89PNG\r\n\x1a\n" + bytes(100), b"II*\x00" + struct.pack("<I", 10**9) + bytes(8)):
        assert count_pieces(io.BytesIO(not_a_tiff)) == 0


def test_the_cli_refuses_a_bomb_per_file_and_writes_the_rest(bomb, tmp_path, toy_model_file):
    from tests.test_cutout import petseg_process

    photo = small_png(tmp_path)
    result = petseg_process("cutout", bomb, photo, "--model", toy_model_file, "--out", tmp_path / "out")
    errors = result.stderr.decode().splitlines()
    assert result.returncode == 1
    assert any(line.startswith("error: ") and "bomb.png" in line and "over the limit" in line for line in errors), errors
    assert (tmp_path / "out" / "photo.png").is_file() and not (tmp_path / "out" / "bomb.png").exists()


@pytest.fixture(scope="module")
def toy_model_file(tmp_path_factory):
    from petseg.models import create_model, save_model

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(create_model("unet_diy", width=4, depth=2, image_size=32), path)
    return path


def test_a_bomb_pillow_itself_refuses_is_still_one_clear_line(tmp_path):
    """Above twice PIL.Image.MAX_IMAGE_PIXELS Pillow raises on open; that too names the file."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(30_000, b""))  # the header is all Pillow reads before refusing
    for source, name in ((path, "huge.png"), (io.BytesIO(path.read_bytes()), "<bytes>")):
        with pytest.raises(ImageError, match=r"decompression-bomb limit .*900000000 pixels") as raised:
            load_rgb(source, max_pixels=None)
        assert str(raised.value).startswith(str(path) if name == "huge.png" else name) and "\n" not in str(raised.value)


def test_the_cli_says_it_once_where_pillow_would_also_warn(tmp_path, toy_model_file):
    """96 megapixels: over Pillow's warning size (89), so Pillow warns on open; the CLI prints only its own line."""
    path = tmp_path / "large.png"
    path.write_bytes(png_bytes(9_800, b""))
    from tests.test_cutout import petseg_process

    result = petseg_process("cutout", path, "--model", toy_model_file, "--out", tmp_path / "out", "--max-pixels", 1000)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1 and len(lines) == 2, lines
    assert "large.png: 9800x9800 is 96040000 pixels, over the limit of 1000; raise --max-pixels" in lines[0]
    assert lines[1].startswith("wrote 0 file(s)")


def test_the_limit_itself_must_be_a_positive_number_of_pixels(tmp_path):
    from petseg.inference import remove_background

    for limit in (0, -5, 1.5, True, "100"):
        for source in (small_png(tmp_path), np.zeros((4, 4, 3), np.uint8)):
            with pytest.raises(PetsegError) as raised:
                remove_background(source, max_pixels=limit)
            assert str(raised.value).startswith("max_pixels must be a whole number at least 1, got ")


def icon_files(png: bytes) -> dict[str, bytes]:
    """An ICO and an ICNS whose one entry, declared 16x16 / 512x512, holds `png` at its own size."""
    ico = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png
    element = b"ic09" + struct.pack(">I", 8 + len(png)) + png
    return {"ICO": ico, "ICNS": b"icns" + struct.pack(">I", 8 + len(element)) + element}


ICON_CHILD = PEAK_MEMORY_CODE + """
import json, sys
from petseg.data.decode import load_rgb
from petseg.errors import PetsegError

try:
    load_rgb(open(sys.argv[1], "rb").read())
    error = None
except PetsegError as refused:
    error = str(refused)
print(json.dumps({"error": error, "peak_mb": peak_mb()}))
"""


def test_icons_holding_a_bomb_are_refused_before_decoding(bomb, tmp_path):
    """Pillow decodes an icon's inner PNG at its own size (ICO while opening, ICNS while
    loading, whatever size the header declares): such formats are refused unread."""
    from petseg.data.decode import readable_suffixes

    for image_format, data in icon_files(bomb.read_bytes()).items():
        path = tmp_path / f"icon.{image_format.lower()}"
        path.write_bytes(data)
        child = subprocess.run([sys.executable, "-c", ICON_CHILD, str(path)], capture_output=True, text=True,
                               timeout=300)
        result = json.loads(child.stdout)
        assert result["error"] == (f"<bytes>: {image_format} files are not supported "
                                   "(Pillow decodes the image inside them before its size can be checked)"), child.stderr
        assert result["peak_mb"] < PEAK_MEMORY_LIMIT_MB, result
        assert path.suffix not in readable_suffixes()  # folder walks pass over them


@pytest.mark.parametrize("image_format", ["ICO", "BLP"])
def test_a_small_icon_or_texture_is_refused_without_decoding_either(tmp_path, decodes, image_format):
    """BLP (game textures) holds JPEG or palette data that Pillow decodes at sizes of its own."""
    path = tmp_path / f"small.{image_format.lower()}"
    if image_format == "ICO":
        path.write_bytes(icon_files(small_png(tmp_path).read_bytes())["ICO"])
    else:
        Image.new("P", (8, 8)).save(path, image_format)
    decodes.clear()
    with pytest.raises(ImageError, match=rf"{path.name}: {image_format} files are not supported"):
        load_rgb(path)
    assert decodes == []


@pytest.fixture
def tiff_opens(monkeypatch) -> list[int]:
    """Each time Pillow's TIFF plugin starts on a file (where it unpacks every strip); it then gives up."""
    from PIL import TiffImagePlugin

    opened: list[int] = []

    def spy(self):
        opened.append(1)
        raise SyntaxError("the TIFF plugin was reached")

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "_open", spy)
    return opened


def test_too_many_strips_are_refused_in_a_stream_that_cannot_seek_and_when_sniffing(tmp_path, tiff_opens):
    """A pipe skipped the strip count (1.4 GB for `cat strips.tif | petseg cutout -`), and so did
    sniff_format (`petseg data check`, `petseg train`: 1.3 GB)."""
    from petseg.data.decode import sniff_format
    from petseg.data.tiff_pieces import MAX_PIECES
    from tests.test_decode import Unseekable

    data = tiff_of_strips(MAX_PIECES + 1)
    path = tmp_path / "strips.tif"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=f"^<bytes>: a TIFF in {MAX_PIECES + 1} strips or tiles, over {MAX_PIECES} "):
        load_rgb(Unseekable(data))
    assert sniff_format(path) is None
    assert tiff_opens == []
