"""Decode images and trimaps by content, never by file extension.

The real Oxford-IIIT Pet set has a GIF and an RGBA PNG named `.jpg` and a dozen
corrupt JPEGs; users upload CMYK, 16-bit, palette and EXIF-rotated photos. Every
image leaves here as an upright RGB uint8 array, or as an ImageError whose message
names the file and the reason.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from petseg.data.jpeg_scans import MAX_SCANS, count_scans
from petseg.data.labels import TRIMAP_OFFSET
from petseg.data.tiff_pieces import MAX_PIECES, count_pieces
from petseg.errors import ImageError, LabelError, NotAnImageError
from petseg.limits import DEFAULT_MAX_PIXELS, MAX_ASPECT_RATIO, check_whole_number  # noqa: F401  (DEFAULT_MAX_PIXELS re-exported: decoding is where it applies)

# A PIL image handed in by a caller may still be undecoded (Image.open is lazy): it is
# size-checked like a file before anything reads its pixels.
ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image]

# Pillow's own bomb check (PIL.Image.MAX_IMAGE_PIXELS) is process-wide and belongs to
# the application: petseg never changes it, and checks its own `max_pixels` on top.
# What Pillow's plugins raise on a malformed file is not one type (OSError, SyntaxError,
# a DDS with no pixel format NotImplementedError, others struct.error or IndexError), so
# below every Exception from decoding is the file's fault: reported for that file alone.
# Formats whose Pillow plugins decode an image stored inside them at that image's own
# size, not the size their header declares, so no pixel limit can be checked first: ICO
# while opening, ICNS and BLP (a JPEG inside) while loading. A 400 KB icon holding a
# 12000 x 12000 PNG took a server from 230 MB to 1.3 GB. Icons and game textures are not
# pet photos: these are refused, and folder walks pass over them.
UNCHECKABLE_FORMATS = ("ICO", "ICNS", "BLP")
# What Image.open reads to identify a file (its plugins' accept functions see this much).
PREFIX_BYTES = 16
# A camera's EXIF fits in one 64 KB JPEG segment. A bigger block is not a camera's: its
# orientation is not trusted, and none of it is unpacked (one tag can hold millions of numbers).
MAX_EXIF_BYTES = 1 << 20
ORIENTATION_TAG = 0x0112
# A file object that cannot seek (stdin from a pipe) is copied first: Pillow would read all of it
# into memory (1 GB of zeros piped to `petseg cutout -` took 1.1 GB), and the TIFF check needs to
# seek. The copy stays in memory up to SPOOL_MEMORY_BYTES and goes to a temporary file beyond.
SPOOL_MEMORY_BYTES = 8 << 20
COPY_CHUNK_BYTES = 1 << 20
# The longest stream copied: over any photo within the pixel limit stored uncompressed (100
# megapixels of RGBA at 16 bits a channel is 800 MB). Nothing limits a file's size (it is read
# where it lies); this bounds the disk a stream with no end (/dev/zero) can fill.
MAX_STREAM_BYTES = 2 << 30
# EXIF orientation -> the turn that makes the photo upright (the table of ImageOps.exif_transpose).
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def source_name(source: ImageSource) -> str:
    """How a source is named in messages: its path, or a stand-in for in-memory data."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, Image.Image):
        return getattr(source, "filename", None) or "<image>"
    return getattr(source, "name", None) or "<bytes>"


@functools.lru_cache(maxsize=1)
def readable_suffixes() -> frozenset[str]:
    """File name endings (".jpg", ".avif", ...) of every format this Pillow can decode."""
    Image.init()

    def decodable(image_format: str) -> bool:  # stubs (GRIB, HDF5, ...) identify files but decode none
        factory = Image.OPEN.get(image_format, (None,))[0]
        return factory is not None and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))

    return frozenset(
        suffix for suffix, image_format in Image.registered_extensions().items()
        if decodable(image_format) and image_format not in UNCHECKABLE_FORMATS
    )


@functools.lru_cache(maxsize=1)
def checkable_formats() -> tuple[str, ...]:
    """Every format Pillow identifies, less UNCHECKABLE_FORMATS."""
    Image.init()
    return tuple(image_format for image_format in Image.OPEN if image_format not in UNCHECKABLE_FORMATS)


# Formats whose first bytes are a signature: a file that starts with one but that Pillow
# cannot open is a damaged photo (400), not something other than an image (415).
SIGNED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")


def _starts_like(image_format: str, prefix: bytes) -> bool:
    accept = Image.OPEN.get(image_format, (None, None))[1]
    try:
        return accept is not None and bool(accept(prefix))
    except Exception:  # some plugins' checks fail on short prefixes
        return False


def refuse_unidentified(prefix: bytes, name: str) -> None:
    """After Image.open gave up on a file: an ImageError if its first bytes are those of an
    UNCHECKABLE_FORMATS file (refused) or of a SIGNED_FORMATS one (damaged)."""
    Image.init()
    for image_format in UNCHECKABLE_FORMATS:
        if _starts_like(image_format, prefix):
            raise ImageError(f"{name}: {image_format} files are not supported (Pillow decodes the image "
                             "inside them before its size can be checked)")
    for image_format in SIGNED_FORMATS:
        if _starts_like(image_format, prefix):
            raise ImageError(f"{name}: a damaged {image_format} file (its header cannot be read)")


def not_a_regular_file(path: str | Path) -> str | None:
    """Why a path must not be opened as an image (a FIFO would block, a device never end), or None.

    Follows symlinks; a symlink loop or a dangling link is named as such.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file" if not os.path.islink(path) else "broken symbolic link"
    except OSError as error:  # ELOOP, EACCES, ENAMETOOLONG, ...
        return error.strerror or str(error)
    except ValueError:  # a NUL byte in the name
        return "the name holds a NUL byte"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    kinds = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "a special file")
    return f"is {kind}, not a regular file"


def check_pixels(name: str, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image over `max_pixels` or of no photo's shape, from its size alone (before any decoding)."""
    if min(width, height) >= 1 and max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageError(f"{name}: {width}x{height} is not a photo's shape "
                         f"(one side is over {MAX_ASPECT_RATIO} times the other)")
    if max_pixels is None:
        return
    check_whole_number(max_pixels, "max_pixels", 1)
    if width * height > max_pixels:
        def amount(pixels: int, scale: float) -> str:  # 169, 100.5
            return f"{pixels / scale:.1f}".removesuffix(".0")

        unit, scale = ("megapixels", 1e6) if max_pixels >= 1e6 else ("pixels", 1)
        if amount(width * height, scale) == amount(max_pixels, scale):  # not "50 megapixels, over the limit of 50"
            unit, scale = "pixels", 1
        raise ImageError(f"{name}: {width}x{height} is {amount(width * height, scale)} {unit}, "
                         f"over the limit of {amount(max_pixels, scale)}", advice="raise {max_pixels}")


def check_scans(name: str, image: Image.Image) -> None:
    """Refuse a JPEG (or MPO) not yet decoded that holds over MAX_SCANS scans (jpeg_scans.py)."""
    file = getattr(image, "fp", None)
    if image.format not in ("JPEG", "MPO") or file is None:
        return
    try:
        scans = count_scans(file)
    except (OSError, ValueError):  # a closed or unseekable file: the decoder will say what is wrong
        return
    if scans > MAX_SCANS:
        raise ImageError(f"{name}: a JPEG of over {MAX_SCANS} scans (each one a pass over every pixel; "
                         "photos have at most a few dozen)")


def check_pieces(source: str | Path | BinaryIO, name: str) -> None:
    """Refuse a TIFF of over MAX_PIECES strips or tiles before Image.open unpacks them (tiff_pieces.py)."""
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as file:
                pieces = count_pieces(file)
        else:
            pieces = count_pieces(source)
    except (OSError, ValueError, struct.error):  # unreadable or unseekable: Image.open will say what is wrong
        return
    if pieces > MAX_PIECES:
        raise ImageError(f"{name}: a TIFF in {pieces} strips or tiles, over {MAX_PIECES} (each costs memory before "
                         "the image's size can be checked; photos have at most a few thousand)")


def open_lazily(source: str | Path | bytes | BinaryIO, name: str) -> Image.Image:
    """Image.open: reads the header only, so the size is known before any pixel is decoded.

    Every Image.open of petseg's goes through here: the checks before it (a regular file, the
    TIFF's pieces) need a path or a file that can seek, so a stream that cannot is copied first.
    """
    if isinstance(source, (str, Path)):
        problem = not_a_regular_file(source)
        if problem:
            raise ImageError(f"{name}: {problem}")
        return _open_checked(source, name)
    if isinstance(source, bytes):
        return _open_checked(io.BytesIO(source), name)
    if _can_seek(source):
        return _open_checked(source, name)
    copy = _spooled(source, name)
    try:
        image = _open_checked(copy, name)
    except BaseException:
        copy.close()
        raise
    # Ours alone, as Pillow marks its own in-memory copy of such a stream: closed once the pixels are read.
    image._exclusive_fp = True
    return image


def _open_checked(source: str | Path | BinaryIO, name: str) -> Image.Image:
    """check_pieces, then Image.open with its failures as ImageErrors."""
    check_pieces(source, name)
    try:
        return Image.open(source, formats=checkable_formats())
    except UnidentifiedImageError:
        refuse_unidentified(_prefix(source), name)
        raise NotAnImageError(f"{name}: not an image (unrecognised or empty file)") from None
    except Image.DecompressionBombError as error:
        # Pillow's process-wide limit is stricter than ours here; its message has the size.
        raise ImageError(f"{name}: refused by Pillow's decompression-bomb limit ({error})") from None
    except Exception as error:
        raise ImageError(f"{name}: cannot read image ({error})") from None


def _can_seek(file: BinaryIO) -> bool:
    """Whether a file object goes back to its start, as Image.open and check_pieces need (a pipe does not)."""
    try:
        if callable(getattr(file, "seekable", None)) and not file.seekable():
            return False
        file.seek(file.tell())
        return True
    except Exception:  # no seek or tell (AttributeError), io.UnsupportedOperation, a broken stream
        return False


def _spooled(stream: BinaryIO, name: str) -> tempfile.SpooledTemporaryFile:
    """What is left in a stream, copied chunk by chunk: in memory while small, then on disk."""
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
    try:
        while chunk := stream.read(COPY_CHUNK_BYTES):
            if copy.tell() + len(chunk) > MAX_STREAM_BYTES:
                raise ImageError(f"{name}: over {MAX_STREAM_BYTES >> 30} GB read from a stream without reaching "
                                 "its end (photos are far smaller)")
            try:
                copy.write(chunk)
            except OSError as error:  # a full disk under the temporary folder
                raise ImageError(f"{name}: cannot copy the stream to a temporary file "
                                 f"({error.strerror or error})") from None
    except ImageError:
        copy.close()
        raise
    except Exception as error:  # what the stream's own read raises, or a read that gives text
        copy.close()
        raise ImageError(f"{name}: cannot read image ({error})") from None
    copy.seek(0)
    return copy


def _prefix(source: str | Path | BinaryIO) -> bytes:
    """The first bytes of a file, for naming its format after Image.open gave up on it."""
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as file:
                return file.read(PREFIX_BYTES)
        source.seek(0)
        return source.read(PREFIX_BYTES)
    except (OSError, ValueError):
        return b""


def open_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, checking its pixel count before decoding.

    A PIL image is checked by its size and decoded in place (a no-op when it already is).
    """
    name = source_name(source)
    image = source if isinstance(source, Image.Image) else open_lazily(source, name)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{name}: the image is empty ({width}x{height})")
    check_pixels(name, width, height, max_pixels)
    check_scans(name, image)
    try:
        image.load()
    except Exception as error:  # Pillow's bomb check too: it checks some frames and tiles again
        problem = f"{name}: corrupt or truncated {image.format or 'image'} ({error})"
    else:
        return image
    # Raised out here, after closing our image: a 100-byte file can declare 7000 x 7000 pixels,
    # and a half-decoded buffer kept alive by the exception's frames stayed in a server's memory.
    if image is not source:
        image.close()
    raise ImageError(problem)


def deep_peak(values: np.ndarray, mode: str) -> float:
    """The white of a 16-bit, 32-bit or float grey image: 65535 for 16 bits; otherwise the
    first of 1 (float images only: values in 0..1), 255 and 65535 that holds the brightest
    finite value, or that value itself."""
    if mode.startswith("I;16"):
        return 65535.0
    brightest = float(np.max(values, initial=0.0, where=np.isfinite(values)))
    candidates = ((1.0,) if mode == "F" else ()) + (255.0, 65535.0)
    return next((peak for peak in candidates if brightest <= peak), brightest)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. 16-bit and float images are scaled, not clipped."""
    if image.mode == "RGB":
        return image  # convert() would copy: 200 MB for a 50-megapixel photo
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # float32, scaled in place: float64 and its temporaries took 2.2 GB for an 81 MP 16-bit PNG.
        values = np.array(image, dtype=np.float32)  # a copy: asarray of an F image is read-only
        values *= 255.0 / deep_peak(values, image.mode)
        values += 0.5
        np.nan_to_num(values, copy=False)  # a NaN pixel is black, not a cast warning
        np.clip(values, 0, 255, out=values)
        return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_rgb(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, exif: bool = True) -> np.ndarray:
    """Decode a photo to an upright (H, W, 3) uint8 array.

    A PIL image handed in is never modified: its EXIF rotation is applied to a copy.
    """
    image = open_image(source, max_pixels=max_pixels)
    if exif:
        image = upright(image)
    try:
        return np.asarray(to_rgb(image))
    except Exception as error:  # modes Pillow cannot convert ("La", ...)
        raise ImageError(f"{source_name(source)}: cannot convert a {image.mode} image to RGB ({error})") from None


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (a new image), or the image itself.

    Not ImageOps.exif_transpose: it also rewrites the EXIF block (exif.tobytes()), which
    unpacks every tag, and a 16 MB PNG whose EXIF held one tag of 8 million numbers took
    it to 1.7 GB. Here only the orientation tag is unpacked (Pillow reads tags lazily),
    and the EXIF is never written out.
    """
    exif_block = image.info.get("exif")
    if isinstance(exif_block, (bytes, bytearray)) and len(exif_block) > MAX_EXIF_BYTES:
        return image
    try:
        orientation = image.getexif().get(ORIENTATION_TAG)
    except Exception:  # a broken EXIF block should not cost the user the photo
        return image
    turn = UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image if turn is None else image.transpose(turn)


def load_labels(path: str | Path) -> np.ndarray:
    """Decode an Oxford trimap (1 pet, 2 background, 3 border) to class indices 0..2."""
    image = open_image(path)  # the photos' pixel limit: a 164 KB PNG can be 13000 x 13000
    if image.mode not in ("L", "P", "I", "I;16"):
        raise LabelError(f"{path}: trimap must be single-channel, got mode {image.mode}")
    trimap = np.asarray(image)
    bad = np.setdiff1d(np.unique(trimap), (1, 2, 3))
    if bad.size:
        raise LabelError(f"{path}: trimap values must be 1, 2 or 3, found {bad[:5].tolist()}")
    return (trimap - TRIMAP_OFFSET).astype(np.uint8)


def sniff_format(path: str | Path) -> str | None:
    """The format Pillow sees in a file's content (JPEG, PNG, GIF...), or None."""
    try:
        with open_lazily(path, str(path)) as image:  # its checks too: a TIFF of millions of strips took 1.3 GB
            return image.format
    except Exception:  # unidentified, refused, a bomb, or malformed: no format to name
        return None
