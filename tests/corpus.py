"""Files people really upload: broken ones that must be refused with a sentence, and odd ones that must load.

Everything is generated here; nothing is downloaded or committed.
"""

from __future__ import annotations

import functools
import io
import zipfile

import numpy as np
from PIL import Image


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(w: int = 64, h: int = 48) -> Image.Image:
    """A deterministic colourful picture: red left half, blue right half, a green square."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (220, 30, 30)
    arr[:, w // 2 :] = (30, 30, 220)
    arr[h // 4 : h // 2, w // 4 : w // 2] = (30, 200, 30)
    return Image.fromarray(arr)


@functools.lru_cache(maxsize=1)
def bad_files() -> dict[str, tuple[str, bytes]]:
    """Case name -> (file name, bytes) for input the loader must refuse with :class:`BadImageError`."""
    jpeg = _save(_photo(256, 256), "JPEG", quality=90)
    png = _save(_photo(256, 256), "PNG")
    webp = _save(_photo(256, 256), "WEBP")
    gif = _save(_photo(128, 128).convert("P"), "GIF")
    tiff = _save(_photo(128, 128), "TIFF")
    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w") as z:
        z.writestr("cat.jpg", jpeg)
    bomb = _save(Image.new("1", (12_000, 12_000)), "PNG")  # 144 Mpx, over Pillow's 89 Mpx limit, ~20 KB on disk
    return {
        "empty": ("empty.jpg", b""),
        "text": ("notes.png", b"this is a text file, not a picture\n" * 10),
        "random_bytes": ("noise.jpg", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "html_as_jpg": ("page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>"),
        "truncated_jpeg": ("half.jpg", jpeg[: len(jpeg) // 2]),
        "truncated_png": ("half.png", png[: len(png) // 2]),
        "truncated_webp": ("half.webp", webp[: len(webp) // 2]),
        "truncated_gif": ("half.gif", gif[: len(gif) // 3]),
        "header_only_bmp": ("head.bmp", _save(_photo(), "BMP")[:54]),
        "truncated_tiff": ("half.tiff", tiff[: len(tiff) // 2]),
        "zip_archive": ("photos.jpg", zip_buf.getvalue()),
        "pdf": ("scan.png", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"),
        "svg": ("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'),
        "eps_needs_ghostscript": ("art.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        "decompression_bomb": ("bomb.png", bomb),
        "too_many_bytes": ("huge.jpg", jpeg + b"\0" * (26 * 2**20)),
        # a model sees a square crop of the centre; Streamlit could not even draw it
        "thin_strip": ("strip.png", _save(Image.new("RGB", (20_000, 1), (50, 60, 70)), "PNG")),
    }


def _exif_rotated() -> bytes:
    im = _photo(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    return _save(im, "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (32, 32), c) for c in ((10, 200, 10), (200, 10, 10))]
    return _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _rgba_half_transparent() -> bytes:
    arr = np.zeros((32, 32, 4), np.uint8)
    arr[..., 0] = 255
    arr[:, :16, 3] = 255  # left opaque red, right fully transparent
    return _save(Image.fromarray(arr), "PNG")


def _palette_transparent() -> bytes:
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return _save(im, "PNG", transparency=1)  # every pixel uses the transparent index


def _gradient16() -> bytes:
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    return _save(Image.fromarray(arr), "PNG")


def _float_tiff() -> bytes:
    arr = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1))
    return _save(Image.fromarray(arr), "TIFF")


def _int32_tiff() -> bytes:
    arr = np.tile(np.linspace(0, 4095, 64).astype(np.int32), (16, 1))  # 12-bit data in a 32-bit container
    return _save(Image.fromarray(arr), "TIFF")


@functools.lru_cache(maxsize=1)
def odd_files() -> dict[str, tuple[str, bytes]]:
    """Case name -> (file name, bytes) for unusual but valid images that must load as RGB."""
    return {
        "cmyk_jpeg": ("print.jpg", _save(_photo().convert("CMYK"), "JPEG")),
        "grey_L": ("grey.png", _save(_photo().convert("L"), "PNG")),
        "bilevel_1": ("fax.bmp", _save(_photo().convert("1"), "BMP")),
        "LA": ("grey_alpha.png", _save(_photo().convert("LA"), "PNG")),
        "palette": ("palette.gif", _save(_photo().convert("P"), "GIF")),
        "palette_transparent": ("sticker.png", _palette_transparent()),
        "rgba": ("cutout.png", _rgba_half_transparent()),
        "I16": ("depth.png", _gradient16()),
        "I32_12bit": ("sensor.tiff", _int32_tiff()),
        "float": ("float.tiff", _float_tiff()),
        "exif_rotated": ("phone.jpg", _exif_rotated()),
        "animated_gif": ("anim.gif", _animated_gif()),
        "multipage_tiff": ("pages.tiff", _multipage_tiff()),
        "one_pixel": ("dot.png", _save(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG")),
        "panorama": ("panorama.png", _save(Image.new("RGB", (5000, 250), (50, 60, 70)), "PNG")),  # 20:1
        "large_jpeg": ("big.jpg", _save(_photo(6000, 4000), "JPEG", quality=80)),
        "webp": ("photo.webp", _save(_photo(), "WEBP", lossless=True)),
    }


def mixed_folder(root) -> int:
    """A folder dataset of what a scan meets: photos as 500×375 JPEGs (class ``photos``), a grey JPEG, and every
    file of :func:`bad_files` and :func:`odd_files` (class ``odd``). Returns how many are plain RGB or grey JPEGs,
    the files a device may decode."""
    from pathlib import Path

    from skimage import data

    root = Path(root)
    (root / "photos").mkdir(parents=True, exist_ok=True)
    (root / "odd").mkdir(parents=True, exist_ok=True)
    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    for k, arr in enumerate(photos):
        Image.fromarray(arr).resize((500, 375)).save(root / "photos" / f"{k}.jpg", quality=90)
    Image.fromarray(photos[0]).convert("L").save(root / "photos" / "grey.jpg", quality=90)
    for case, (name, blob) in {**bad_files(), **odd_files()}.items():
        (root / "odd" / f"{case}_{name}").write_bytes(blob)
    return len(photos) + 1


def assert_same_scan_rows(a_dir, b_dir, confidence_tol: float) -> None:
    """Two scan folders hold the same files, each once, with the same errors and top-1 classes, and confidences
    within ``confidence_tol``."""
    from interp.datasets import load_scan

    a = load_scan(a_dir)[1].set_index("id").sort_index()
    b = load_scan(b_dir)[1].set_index("id").sort_index()
    assert a.index.equals(b.index) and b.index.is_unique
    assert (a["error"].fillna("") == b["error"].fillna("")).all()
    assert (a["pred"].fillna(-1) == b["pred"].fillna(-1)).all()
    assert np.nanmax(np.abs(a["confidence"].to_numpy(float) - b["confidence"].to_numpy(float))) < confidence_tol
