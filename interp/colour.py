"""Any Pillow colour mode as 8-bit ``RGB``: transparency over white, 16-bit and float data scaled by their range
(what :func:`interp.load_image` does to every picture, saying so in the image's notes)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from interp.errors import BadImageError

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to ``RGB``, appending what was done to ``notes``.

    Transparency is composited over white; 16-bit and float data are scaled to 8 bits by their range.
    """
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append("transparent areas shown on white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode in _HIGH_DEPTH_MODES:
        notes.append(f"{im.mode} values scaled to 8 bits")
        return Image.fromarray(to_uint8(np.asarray(im))).convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError):
        raise BadImageError(
            f"the colour mode {im.mode!r} cannot be converted to RGB; save the image as an RGB PNG or JPEG."
        ) from None


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel data to ``uint8`` keeping proportions (8/12/16/32-bit ranges, or 0-1 floats)."""
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(values.min()), float(values.max())
    if np.issubdtype(arr.dtype, np.floating):
        if lo >= 0.0 and hi <= 1.0:
            scaled = values * 255.0
        else:
            scaled = (values - lo) / (hi - lo or 1.0) * 255.0
    else:
        full_scale = next((m for m in (255, 4095, 65535, 2**32 - 1) if hi <= m), hi)
        scaled = np.clip(values, 0, None) / full_scale * 255.0
    return np.clip(scaled.round(), 0, 255).astype(np.uint8)
