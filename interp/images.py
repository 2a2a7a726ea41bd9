"""Turn untrusted bytes into an RGB image the models can use, or one clear sentence saying why not.

Uploads come from strangers on a shared deployment, so the loader assumes nothing: empty files, truncated files,
files that are not images, decompression bombs, every Pillow mode (1, L, LA, P, RGBA, CMYK, I;16, I, F…), EXIF
rotations and animated files all either become an ``RGB`` image or raise :class:`BadImageError`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from interp.colour import to_rgb, to_uint8
from interp.errors import BadImageError, as_array, is_tensor

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 25 * 2**20
"""Largest file accepted, in bytes; bigger uploads are refused before decoding."""

DEFAULT_MAX_SIDE = 2048
"""Longer sides are downscaled on load: models see 224-448 px, and this bounds memory per image."""

MAX_DECODED_BYTES = 384 * 2**20
"""Most memory one decoded picture may take (width × height × bytes per pixel as Pillow stores it): Pillow's own
pixel limit (89 million) at 4 bytes a pixel. Files beyond it are refused before decoding."""

MAX_ASPECT = 32
"""Longest side over shortest side beyond which an image is refused: a model sees a square crop of the centre, and
resizing the short side of a 20,000×1 strip to 224 pixels would make a picture of 4.5 billion pixels."""

_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
"""Bytes a pixel takes in Pillow's memory for modes below 4 (multi-band modes are stored 4 bytes a pixel)."""

# Formats Pillow decodes without calling out to other programs (EPS would run Ghostscript).
PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # JPEG also opens MPO (phone photos)
UPLOAD_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
_FORMATS_IN_WORDS = "JPEG, PNG, WebP, BMP, TIFF or GIF"


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An RGB image ready for any model, with what the loader did to get it there.

    Attributes:
        image: the picture in mode ``RGB``, at most ``DEFAULT_MAX_SIDE`` on its longer side.
        name: what to call it in messages and file names (the upload's name, a sample's name).
        digest: SHA-256 over the size and RGB pixels; the content address used by every cache.
        original_size: ``(width, height)`` as stored in the file, before rotation or downscaling.
        original_mode: the Pillow mode in the file (``"CMYK"``, ``"I;16"``…).
        notes: what the loader changed, in words a user understands (empty when nothing).
    """

    image: Image.Image
    name: str
    digest: str
    original_size: tuple[int, int]
    original_mode: str
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of :attr:`image`."""
        return self.image.size


def load_image(
    source: bytes | str | Path | BinaryIO | np.ndarray | torch.Tensor | Image.Image,
    *,
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> LoadedImage:
    """Decode an image file into RGB, whatever its mode, or raise :class:`BadImageError` with one sentence.

    Args:
        source: the file's bytes, a path to it, or an open binary file; or a picture already in memory, a NumPy array
            or a torch tensor (as :func:`image_from_array` takes it) or a Pillow image (any mode, as a file's).
        name: how to call the file in messages; defaults to the path's name or ``"the image"``.
        max_bytes: files larger than this are refused before decoding.
        max_side: a longer side than this is downscaled (aspect ratio kept).

    Returns:
        A :class:`LoadedImage` in mode ``RGB``. The first frame is used for animated GIF/WebP and multi-page TIFF.
        EXIF orientation is applied. Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is enforced.
    """
    if isinstance(source, np.ndarray) or is_tensor(source):  # NumPy's or torch's
        return image_from_array(source, name or "the array", max_side=max_side)
    if isinstance(source, Image.Image):
        return _from_picture(source, name or "the image", max_side)
    if not isinstance(source, (bytes, bytearray, memoryview, str, Path)) and not hasattr(source, "read"):
        raise BadImageError(f"load_image takes a path, a file's bytes, an open binary file, an array (NumPy's or "
                            f"torch's) or a Pillow image, not {type(source).__name__}.")  # fmt: skip
    im, name, original_size, original_mode, notes = _decode(source, name, max_bytes, max_side)
    return LoadedImage(im, name, image_digest(im), original_size, original_mode, tuple(notes))


@dataclass(frozen=True, eq=False)
class ImageOnDisk:
    """An image file that stands in for its :class:`LoadedImage` without holding the picture: it keeps what loading
    the file told (name, digest, sizes, notes) and decodes the file again each time :attr:`image` is read. For sets
    too big to hold as pictures, such as the folders the ``tcav`` command reads: a thousand 500×375 photos take 750 MB
    as pictures (:func:`picture_bytes`) and a few hundred kB as these; where a set's activations are cached, its files
    are not decoded again.

    Reading :attr:`image` raises :class:`BadImageError` when the file no longer gives the picture it gave when it
    was listed (changed or removed since): results cached under the old digest would otherwise describe other pixels.
    """

    path: Path
    name: str
    digest: str
    size: tuple[int, int]
    original_size: tuple[int, int]
    original_mode: str
    notes: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    max_side: int = DEFAULT_MAX_SIDE

    @classmethod
    def read(
        cls, path: str | Path, *, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> ImageOnDisk:  # fmt: skip
        """Decode ``path`` once, as :func:`load_image` does (same errors), and keep all but the picture."""
        loaded = load_image(path, name=name, max_bytes=max_bytes, max_side=max_side)
        return cls(Path(path), loaded.name, loaded.digest, loaded.size, loaded.original_size, loaded.original_mode,
                   loaded.notes, max_bytes, max_side)  # fmt: skip

    @property
    def image(self) -> Image.Image:
        """The ``RGB`` picture, decoded from the file now."""
        try:
            loaded = load_image(self.path, name=self.name, max_bytes=self.max_bytes, max_side=self.max_side)
        except BadImageError as exc:  # its sentence names the server's path, which a visitor need not see
            raise BadImageError(f"{self.name} can no longer be read: it was changed, moved or deleted since it was "
                                "listed; run again.") from exc  # fmt: skip
        if loaded.digest != self.digest:
            raise BadImageError(f"{self.name} changed on disk since it was listed; run again to use it as it is now.")
        return loaded.image


def as_loaded(image: LoadedImage | ImageOnDisk | bytes | str | Path | BinaryIO | np.ndarray | Image.Image,
              ) -> LoadedImage | ImageOnDisk:  # fmt: skip
    """``image`` itself where it is a :class:`LoadedImage` (or an :class:`ImageOnDisk`), else :func:`load_image`'s
    (a path, bytes, an array, a Pillow image…): what the API's functions accept for an image."""
    return image if isinstance(image, (LoadedImage, ImageOnDisk)) else load_image(image)


def image_list(images: object, what: str = "images") -> list[LoadedImage | ImageOnDisk]:
    """``images`` (any collection of what :func:`as_loaded` takes) as a list of loaded images. One image where a set
    is taken, ``None``, or a path's text is a sentence naming ``what``: a path's text was read as one image per
    letter, a picture failed on ``len()``."""
    single = (str, bytes, bytearray, Path, LoadedImage, ImageOnDisk, Image.Image, np.ndarray)
    if images is None or isinstance(images, single) or not hasattr(images, "__iter__"):
        raise BadImageError(f"{what}: a list of images is taken (each a LoadedImage, a path or a picture); got "
                            f"{type(images).__name__}.")  # fmt: skip
    return [as_loaded(image) for image in images]  # type: ignore[attr-defined]


def load_rgb(
    source: bytes | str | Path | BinaryIO,
    *,
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Image.Image:
    """:func:`load_image`'s ``RGB`` picture alone, with the same checks and errors but no digest: for batch jobs
    that never look an image up in a cache (a dataset scan), where hashing the pixels costs a tenth of the load."""
    return _decode(source, name, max_bytes, max_side)[0]


def read_bytes(
    source: bytes | str | Path | BinaryIO, *, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """The bytes :func:`load_rgb` would decode, read with its checks and errors (no such file, a folder, a pipe, over
    ``max_bytes``), for callers that look at them before decoding (:func:`interp.jpeg.decode_plain`)."""
    return _read_bytes(source, name, max_bytes)[0]


def _decode(
    source: bytes | str | Path | BinaryIO, name: str | None, max_bytes: int, max_side: int
) -> tuple[Image.Image, str, tuple[int, int], str, list[str]]:
    data, name = _read_bytes(source, name, max_bytes)
    if not data:
        raise BadImageError(f"{name} is empty (0 bytes); choose a {_FORMATS_IN_WORDS} file.")
    if len(data) > max_bytes:
        raise BadImageError(_too_large(name, len(data), max_bytes))
    Image.init()  # registers every plugin, so that ``formats`` can name MPO, WebP and TIFF
    try:
        im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except Image.DecompressionBombError:
        raise BadImageError(_too_many_pixels(name)) from None
    except UnidentifiedImageError:
        raise BadImageError(f"{name} is not an image we can read; choose a {_FORMATS_IN_WORDS} file.") from None
    except Exception as exc:  # Pillow raises many types on malformed headers (SyntaxError, struct.error…)
        log.info("Image.open failed for %s: %r", name, exc)
        raise BadImageError(f"{name} is damaged and cannot be read; try saving it again as PNG or JPEG.") from None

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and im.width * im.height > limit:
        raise BadImageError(_too_many_pixels(name, im.size))
    original_size, original_mode = im.size, im.mode
    notes: list[str] = []

    _check_aspect(name, im.width, im.height)
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"used the first of its {frames} frames")
    if im.format in ("JPEG", "MPO") and max(im.size) > 2 * max_side:
        im.draft("RGB", (max_side, max_side))  # decode at a reduced scale: far less memory for huge photos
    decoded = picture_bytes(im)
    if decoded > MAX_DECODED_BYTES:  # where the format cannot be decoded at a reduced scale
        raise BadImageError(
            f"{name} ({im.width}×{im.height}, {im.mode}) would take {decoded / 2**20:.0f} MB of memory to decode, over "
            f"the {MAX_DECODED_BYTES / 2**20:.0f} MB limit; save a smaller copy (models use at most a few hundred "
            "pixels a side)."
        )
    try:
        im.load()
    except Image.DecompressionBombError:
        raise BadImageError(_too_many_pixels(name, im.size)) from None
    except Exception as exc:
        log.info("decoding failed for %s: %r", name, exc)
        raise BadImageError(
            f"{name} is truncated or damaged and cannot be decoded; try the original file again."
        ) from None

    full = im.size
    im = _reduced(im, max_side)  # before anything copies the full-size picture (a rotation, a mode conversion)
    im = _apply_exif_orientation(im, notes)
    im = to_rgb(im, notes)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if im.size not in (full, full[::-1]):
        notes.append(f"downscaled from {original_size[0]}×{original_size[1]} to {im.width}×{im.height}")
    return im, name, original_size, original_mode, notes


def _reduced(im: Image.Image, max_side: int) -> Image.Image:
    """``im`` shrunk by the largest whole factor that keeps its longer side at least ``max_side`` (box averages,
    in its own mode), so that conversions and the final resize work on a small picture: a 9,400² 16-bit PNG took
    3 GB to convert at full size."""
    factor = max(im.size) // max_side
    if factor < 2:
        return im
    if im.mode.startswith("I;16"):  # Pillow cannot reduce 16-bit images: average blocks of rows with numpy
        h, w = (im.height // factor) * factor, (im.width // factor) * factor
        step = factor * 64  # a strip at a time: a copy of the whole picture would double what decoding took
        rows = [np.asarray(im.crop((0, r, w, min(r + step, h)))).reshape(-1, factor, w // factor, factor)
                .mean((1, 3), dtype=np.float32) for r in range(0, h, step)]  # fmt: skip
        return Image.fromarray(np.concatenate(rows).round().astype(np.uint16))
    if im.mode in ("1", "P"):
        im = im.convert("RGBA" if "transparency" in im.info else ("L" if im.mode == "1" else "RGB"))
    try:
        return im.reduce(factor)
    except ValueError:  # a mode Pillow cannot reduce: convert at full size, as before
        return im


def image_from_array(array: np.ndarray | torch.Tensor, name: str, *, max_side: int = DEFAULT_MAX_SIDE) -> LoadedImage:
    """Wrap an in-memory array as a :class:`LoadedImage`, or raise :class:`BadImageError` with one sentence.

    Args:
        array: a NumPy array or a torch tensor (on any device), ``(H, W)`` or ``(H, W, 1)`` grey, ``(H, W, 3)`` or
            ``(H, W, 4)`` colour; ``uint8``, ``bool``, other integers (scaled to 8 bits from their range, as 16-bit
            files are: values up to 255 stay as they are), or floats from 0 to 1. Floats outside that range are
            refused, not clipped: an image of floats from 0 to 255 came out white.
        name: how to call the image.
        max_side: a longer side than this is downscaled (aspect ratio kept), as for files.
    """
    tensor = is_tensor(array)  # torch's, on any device, with a gradient or in bfloat16
    arr = as_array(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        first = arr.ndim == 3 and arr.shape[0] in (1, 3, 4)
        turn = "tensor.permute(1, 2, 0)" if tensor else "array.transpose(1, 2, 0)"
        hint = f"; it looks channels first: pass {turn}" if first else ""
        raise BadImageError(f"{name} is an array of shape {arr.shape}, not an image: give (H, W) grey or (H, W, 3) "
                            f"colour pixels{hint}.")  # fmt: skip
    if min(arr.shape[:2]) == 0:
        raise BadImageError(f"{name} has no pixels (an array of shape {arr.shape}).")
    notes: list[str] = []
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
        arr = to_uint8(arr)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise BadImageError(f"{name} holds NaN or infinite values; an image's pixels are finite numbers.")
        low, high = float(arr.min()), float(arr.max())
        if low < 0 or high > 1:
            raise BadImageError(f"{name} holds floats from {low:.4g} to {high:.4g}; float pixels go from 0 to 1 "
                                "(divide by 255, or pass uint8).")  # fmt: skip
        arr = (arr.astype(np.float64) * 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise BadImageError(f"{name} holds {arr.dtype} values; pixels are uint8, bool, other integers or floats "
                            "from 0 to 1.")  # fmt: skip
    return _from_picture(Image.fromarray(arr), name, max_side, notes)


def _from_picture(im: Image.Image, name: str, max_side: int, notes: list[str] | None = None) -> LoadedImage:
    """A picture already in memory as a :class:`LoadedImage`, made as a file's picture is: EXIF orientation applied
    (a Pillow image opened from a file keeps its tag), RGB, downscaled past ``max_side``."""
    notes = [] if notes is None else notes
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and im.width * im.height > limit:  # before a file's picture is decoded
        raise BadImageError(_too_many_pixels(name, im.size))
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"used the first of its {im.n_frames} frames")
    try:
        im.load()  # a Pillow image opened from a file decodes here
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged data
        log.info("Image.load failed for %s: %r", name, exc)
        raise BadImageError(f"{name} is truncated or damaged and cannot be decoded; try the original file.") from None
    if min(im.size) == 0:
        raise BadImageError(f"{name} has no pixels ({im.width}×{im.height}).")
    _check_aspect(name, im.width, im.height)
    rgb = to_rgb(_apply_exif_orientation(_reduced(im, max_side), notes), notes)
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if rgb.size not in (im.size, im.size[::-1]):
        notes.append(f"downscaled from {im.width}×{im.height} to {rgb.width}×{rgb.height}")
    if rgb is im:
        rgb = im.copy()  # ours alone: the caller's picture (or the array under it) may change after
    return LoadedImage(rgb, name, image_digest(rgb), im.size, im.mode, tuple(notes))


def _check_aspect(name: str, width: int, height: int) -> None:
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise BadImageError(
            f"{name} is {width}×{height} pixels: one side is over {MAX_ASPECT} times the other, and a model sees "
            "a square crop of the centre, which would show almost nothing of it; crop it closer to a square."
        )


def picture_bytes(image: Image.Image) -> int:
    """The memory Pillow holds for ``image``'s pixels: 4 bytes a pixel in every multi-band mode (``RGB`` too, stored
    with a spare byte), 1 or 2 in the others."""
    return image.width * image.height * _BYTES_PER_PIXEL.get(image.mode, 4)


def image_digest(image: Image.Image) -> str:
    """SHA-256 over an image's mode, size and pixels: equal pictures get equal digests whatever the file format."""
    h = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _apply_exif_orientation(im: Image.Image, notes: list[str]) -> Image.Image:
    try:
        orientation = im.getexif().get(0x0112, 1)
        if orientation in (None, 1):
            return im  # exif_transpose would return a copy (half a millisecond for a 500×375 photo)
        rotated = ImageOps.exif_transpose(im)
    except Exception as exc:  # broken EXIF blocks are common in phone photos; the pixels are still fine
        log.info("ignoring unreadable EXIF: %r", exc)
        notes.append("its EXIF data is unreadable, so it is shown as stored")
        return im
    notes.append("rotated as its EXIF orientation says")
    return rotated


def _read_bytes(source: bytes | str | Path | BinaryIO, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "the image"
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or path.name
        try:
            info = path.stat()
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block for ever, /dev/zero never ends
                raise BadImageError(f"{path} is not a regular file (a device, pipe or socket); name an image file.")
            if info.st_size > max_bytes:  # refuse before reading a huge file into memory
                raise BadImageError(_too_large(name, info.st_size, max_bytes))
            with open(path, "rb") as f:
                # As many bytes as the file has, and one more to see whether it grew since: asking for the limit
                # at once makes Python allocate 25 MB for a 40 kB photo (90 µs a file against 30, a scan reads
                # thousands). A file that grows while we read stops at the limit all the same.
                data = f.read(info.st_size + 1)
                if len(data) > info.st_size:
                    data += f.read(max(0, max_bytes + 1 - len(data)))
            return data, name
        except FileNotFoundError:
            raise BadImageError(f"there is no file at {path}; check the path.") from None
        except IsADirectoryError:
            raise BadImageError(f"{path} is a folder, not an image file; name one image file.") from None
        except OSError as exc:
            raise BadImageError(f"{path} cannot be read ({exc.strerror}); check its permissions.") from None
    data = source.read(max_bytes + 1)
    return data, name or getattr(source, "name", None) or "the image"


def _too_large(name: str, nbytes: int, max_bytes: int) -> str:
    return f"{name} is {nbytes / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit; save it smaller and try again."


def _too_many_pixels(name: str, size: tuple[int, int] | None = None) -> str:
    limit = Image.MAX_IMAGE_PIXELS or 0
    shape = f" ({size[0]}×{size[1]})" if size else ""
    return (
        f"{name}{shape} has more pixels than the safety limit of {limit / 1e6:.0f} million; "
        "resize it before uploading."
    )
