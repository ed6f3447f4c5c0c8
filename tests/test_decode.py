"""Decoding by content: every mode becomes upright RGB, every bad file one clear error."""

import io

import numpy as np
import pytest
from PIL import Image

from petseg.data.decode import load_labels, load_rgb, sniff_format
from petseg.errors import ImageError, LabelError, NotAnImageError


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _gradient(width=40, height=30) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    return np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.full((height, width), 128, np.uint8)), axis=-1)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "CMYK", "LA"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    rgb = Image.fromarray(_gradient())
    image = rgb.convert(mode)
    fmt = "JPEG" if mode in ("CMYK",) else "PNG"
    path = tmp_path / "photo.jpg"  # extension lies on purpose for PNGs
    path.write_bytes(_encode(image, fmt))
    decoded = load_rgb(path)
    assert decoded.dtype == np.uint8 and decoded.shape == (30, 40, 3)
    # Palette and grayscale lose colour by design; the overall brightness must survive.
    reference = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert np.abs(decoded.astype(np.float64) - reference).mean() < 8.0


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    decoded = load_rgb(path)
    assert decoded.shape == (8, 64, 3)
    expected = np.round(values / 257.0)
    assert np.abs(decoded[..., 0].astype(float) - expected).max() <= 1.0


def test_gif_named_jpg_is_read(tmp_path):
    path = tmp_path / "Abyssinian_34.jpg"
    path.write_bytes(_encode(Image.fromarray(_gradient()).convert("P"), "GIF"))
    assert sniff_format(path) == "GIF"
    assert load_rgb(path).shape == (30, 40, 3)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(_gradient(width=40, height=30))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    path = tmp_path / "rotated.jpg"
    image.save(path, "JPEG", exif=exif, quality=95)
    decoded = load_rgb(path)
    assert decoded.shape == (40, 30, 3)
    upright = np.asarray(image.transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.abs(decoded.astype(float) - upright).mean() < 4.0
    assert load_rgb(path, exif=False).shape == (30, 40, 3)


@pytest.mark.parametrize("orientation", range(0, 10))
def test_every_exif_orientation_turns_the_photo_as_pillow_does(tmp_path, orientation):
    from PIL import ImageOps

    image = Image.fromarray(_gradient(width=40, height=30))
    exif = Image.Exif()
    exif[0x0112] = orientation  # 0 and 9 are not orientations: left as stored
    path = tmp_path / "turned.png"
    image.save(path, "PNG", exif=exif)
    with Image.open(path) as stored:
        expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    assert np.array_equal(load_rgb(path), expected)
    assert (expected.shape[0] == 40) == (orientation in (5, 6, 7, 8))  # the check can tell the turns apart


def test_bytes_and_file_objects_decode(tmp_path):
    data = _encode(Image.fromarray(_gradient()), "PNG")
    assert np.array_equal(load_rgb(data), _gradient())
    assert np.array_equal(load_rgb(io.BytesIO(data)), _gradient())


@pytest.mark.parametrize(
    "content, error, words",
    [
        (b"", NotAnImageError, "not an image"),
        (b"hello, I am text", NotAnImageError, "not an image"),
    ],
)
def test_non_images_name_the_file(tmp_path, content, error, words):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(error, match=words) as raised:
        load_rgb(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_truncated_jpeg_is_an_image_error(tmp_path):
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: corrupt or truncated JPEG"):
        load_rgb(path)



def test_a_truncated_photo_keeps_no_pixels_alive_in_its_error():
    # 100 bytes that declare 1500 x 1500 pixels: the decoder allocates them all before it runs out of data.
    # A server that kept the half-decoded buffer reachable from each error grew by that much per request.
    with pytest.raises(ImageError, match="corrupt or truncated PPM") as raised:
        load_rgb(b"P6 1500 1500 255\n" + bytes(100))
    error = raised.value
    assert error.__context__ is None and error.__cause__ is None
    frame_images = []
    traceback = error.__traceback__
    while traceback is not None:
        frame_images += [value for value in traceback.tb_frame.f_locals.values() if isinstance(value, Image.Image)]
        traceback = traceback.tb_next
    assert frame_images, "the test no longer sees the decoder's image"
    for image in frame_images:
        with pytest.raises(ValueError, match="closed image"):
            image.load()

def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "absent.jpg")


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (1000, 1000)).save(path)
    with pytest.raises(ImageError, match="over the limit"):
        load_rgb(path, max_pixels=999_999)
    assert load_rgb(path, max_pixels=1_000_000).shape == (1000, 1000, 3)


def test_trimap_becomes_class_indices(tmp_path):
    path = tmp_path / "trimap.png"
    Image.fromarray(np.array([[1, 2], [3, 2]], np.uint8)).save(path)
    assert load_labels(path).tolist() == [[0, 1], [2, 1]]


def test_trimap_with_foreign_values_names_file_and_values(tmp_path):
    path = tmp_path / "trimap.png"
    Image.fromarray(np.array([[1, 7], [0, 2]], np.uint8)).save(path)
    with pytest.raises(LabelError, match=r"trimap.png: trimap values must be 1, 2 or 3, found \[0, 7\]"):
        load_labels(path)


def test_float_and_32_bit_images_are_scaled_to_their_range():
    ramp = np.linspace(0, 1, 11, dtype=np.float32).reshape(1, 11)
    np.testing.assert_array_equal(load_rgb(Image.fromarray(ramp, "F"))[0, :, 0], np.floor(ramp[0] * 255 + 0.5))
    wide = np.array([[0, 100_000, 200_000]], np.int32)  # beyond 16 bits: scaled by its brightest value
    np.testing.assert_array_equal(load_rgb(Image.fromarray(wide, "I"))[0, :, 0], [0, 128, 255])
    odd = np.array([[np.nan, np.inf, -np.inf, 0.5]], np.float32)  # no cast warnings, no garbage
    np.testing.assert_array_equal(load_rgb(Image.fromarray(odd, "F"))[0, :, 0], [0, 255, 0, 128])


def dds_without_pixel_format() -> bytes:
    """A DDS header whose pixel format flags are 0: Pillow raises NotImplementedError on it."""
    import struct

    header = struct.pack("<4sIIIIIII", b"DDS ", 124, 0x1007, 4, 4, 0, 0, 0) + bytes(44)
    return header + struct.pack("<II4sIIIII", 32, 0, bytes(4), 0, 0, 0, 0, 0) + bytes(84)


@pytest.mark.parametrize("source, message", [
    (dds_without_pixel_format(), "<bytes>: cannot read image"),
    (Image.new("RGB", (0, 10)), "<image>: the image is empty (0x10)"),
    (Image.new("La", (4, 4)), "<image>: cannot convert a La image to RGB"),
    ("cat\0.jpg", "the name holds a NUL byte"),
])
def test_what_pillow_cannot_read_is_one_image_error(source, message):
    with pytest.raises(ImageError) as raised:
        load_rgb(source)
    assert message in str(raised.value) and "\n" not in str(raised.value)



def test_a_photo_whose_header_is_damaged_is_named_so():
    """Starts like a PNG, but its header's checksum is wrong: damaged (400), not "not an image" (415)."""
    data = bytearray(_encode(Image.fromarray(_gradient()), "PNG"))
    data[29] ^= 0xFF  # inside the IHDR chunk's CRC
    with pytest.raises(ImageError, match=r"^<bytes>: a damaged PNG file \(its header cannot be read\)$") as raised:
        load_rgb(bytes(data))
    assert not isinstance(raised.value, NotAnImageError)


def _progressive_jpeg(extra_scans: int) -> bytes:
    """A small progressive JPEG with `extra_scans` empty refinement scans before its end (10 bytes each)."""
    data = _encode(Image.new("L", (64, 48), 128), "JPEG", progressive=True)
    empty_scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x10"  # 1 component, DC refinement (Ah=1, Al=0)
    return data[:-2] + empty_scan * extra_scans + b"\xff\xd9"


SCAN_SOURCES = {"bytes": bytes, "file": io.BytesIO, "PIL image": lambda data: Image.open(io.BytesIO(data))}


@pytest.mark.parametrize("kind", SCAN_SOURCES)
def test_a_jpeg_of_more_scans_than_any_photo_is_refused_before_decoding(kind):
    from petseg.data.jpeg_scans import MAX_SCANS, count_scans

    own_scans = count_scans(io.BytesIO(_progressive_jpeg(0)))
    assert load_rgb(SCAN_SOURCES[kind](_progressive_jpeg(MAX_SCANS - own_scans))).shape == (48, 64, 3)
    with pytest.raises(ImageError, match=f"a JPEG of over {MAX_SCANS} scans"):
        load_rgb(SCAN_SOURCES[kind](_progressive_jpeg(MAX_SCANS - own_scans + 1)))


def test_scans_are_counted_across_reads(monkeypatch):
    from petseg.data import jpeg_scans

    monkeypatch.setattr(jpeg_scans, "CHUNK_BYTES", 3)
    data = b"\x00\xff\xda\x00\xff\xff\xda" + b"\xff\x00\xda" + b"\x00\x00\xff" + b"\xda"  # splits at 3-byte reads
    file = io.BytesIO(data)
    file.seek(5)
    assert jpeg_scans.count_scans(file) == 3
    assert file.tell() == 5, "the caller's position is kept"
    assert 4 < jpeg_scans.count_scans(io.BytesIO(b"\xff\xda" * 10), stop_after=4) <= 6, "stops soon after the limit"


class Unseekable:
    """A stream like a pipe or a user's reader: read(size) only; reading all at once is refused."""

    def __init__(self, data: bytes, fail: Exception | None = None):
        self.data, self.fail, self.sizes = io.BytesIO(data), fail, []

    def read(self, size=-1):
        if self.fail is not None:
            raise self.fail
        assert size is not None and size > 0, "the whole stream read at once (into memory)"
        self.sizes.append(size)
        return self.data.read(size)


def test_a_stream_that_cannot_seek_is_copied_in_chunks(monkeypatch):
    """Pillow read such a stream whole into memory (1 GB piped in took 1.1 GB); a reader without
    tell() raised AttributeError. Copied in chunks, in memory while small, then on disk."""
    from petseg.data import decode

    photo = _encode(Image.fromarray(_gradient()), "PNG")
    monkeypatch.setattr(decode, "SPOOL_MEMORY_BYTES", 100, raising=False)  # the copy goes to disk
    stream = Unseekable(photo + bytes(5000))  # a photo followed by junk
    assert load_rgb(stream).shape == (30, 40, 3) and max(stream.sizes) <= decode.COPY_CHUNK_BYTES
    monkeypatch.setattr(decode, "MAX_STREAM_BYTES", 4000, raising=False)
    with pytest.raises(ImageError, match=r"^<bytes>: over \d+ GB read from a stream without reaching its end"):
        load_rgb(Unseekable(photo + bytes(5000)))
    with pytest.raises(ImageError, match=r"^<bytes>: cannot read image \(boom\)$"):
        load_rgb(Unseekable(b"", fail=RuntimeError("boom")))
