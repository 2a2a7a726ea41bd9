"""From a raw attribution to pixels: channel aggregation, sign, clipping, colour and overlay. Pure numpy.

All of it runs on stored raw maps, so changing a display setting never recomputes an attribution.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from interp.errors import BadSettingError, shown

Aggregation = Literal["sum", "l2", "max_abs"]
Sign = Literal["positive", "negative", "absolute", "signed"]
COLORMAPS = {"turbo": "Turbo", "viridis": "Viridis", "inferno": "Inferno", "diverging": "RdBu_r"}
AGGREGATIONS = ("sum", "l2", "max_abs")
SIGNS = ("positive", "negative", "absolute", "signed")


@dataclass(frozen=True)
class DisplaySettings:
    """How to draw maps.

    Attributes:
        alpha: weight of the map over the image, 0 (image only) to 1 (map only).
        colormap: one of ``COLORMAPS``; signed maps always use the diverging one.
        sign: which part of a signed map to show; ``"signed"`` shows both around white.
        clip_percentile: values above this percentile of the magnitudes saturate (outliers do not wash out).
        aggregation: how channels become one value per pixel: ``sum``, ``l2`` (norm) or ``max_abs``.
    """

    alpha: float = 0.5
    colormap: str = "turbo"
    sign: Sign = "positive"
    clip_percentile: float = 99.0
    aggregation: Aggregation = "sum"


def aggregate(raw: np.ndarray, how: Aggregation = "sum") -> np.ndarray:
    """``(C, H, W)`` to ``(H, W)``. ``sum`` keeps the sign; ``l2`` and ``max_abs`` are magnitudes."""
    if how == "sum":
        return raw.sum(axis=0)
    if how == "l2":
        return np.sqrt((raw.astype(np.float64) ** 2).sum(axis=0)).astype(np.float32)
    if how == "max_abs":
        return np.abs(raw).max(axis=0)
    raise BadSettingError(f"aggregation {shown(how)} is not one of {', '.join(AGGREGATIONS)}.")


def normalise(values: np.ndarray, sign: Sign = "positive", clip_percentile: float = 99.0) -> np.ndarray:
    """Scale a ``(H, W)`` map for colour: ``[0, 1]`` for positive/negative/absolute, ``[-1, 1]`` for signed."""
    if sign == "positive":
        v = np.clip(values, 0, None)
    elif sign == "negative":
        v = np.clip(-values, 0, None)
    elif sign in ("absolute", "signed"):
        v = np.abs(values) if sign == "absolute" else values
    else:
        raise BadSettingError(f"sign {shown(sign)} is not one of {', '.join(SIGNS)}.")
    magnitudes = np.abs(v)
    top = float(np.percentile(magnitudes, clip_percentile)) if magnitudes.size else 0.0
    if top <= 0:
        top = float(magnitudes.max()) or 1.0
    lo = -1.0 if sign == "signed" else 0.0
    return np.clip(v / top, lo, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """A ``(256, 3)`` ``uint8`` lookup table sampled from plotly's colour scale of that name."""
    from plotly.colors import sample_colorscale, unconvert_from_RGB_255, unlabel_rgb

    if name not in COLORMAPS:
        raise BadSettingError(f"colormap {shown(name)} is not one of {', '.join(COLORMAPS)}.")
    colours = sample_colorscale(COLORMAPS[name], list(np.linspace(0, 1, 256)))
    rgb = [unconvert_from_RGB_255(unlabel_rgb(c)) for c in colours]
    return (np.array(rgb) * 255).round().clip(0, 255).astype(np.uint8)


def colorize(norm: np.ndarray, colormap: str, signed: bool = False) -> np.ndarray:
    """``(H, W)`` in ``[0, 1]`` (or ``[-1, 1]`` when ``signed``) to ``(H, W, 3)`` ``uint8``."""
    if signed:
        lut, pos = colormap_lut("diverging"), (norm + 1) / 2
    else:
        lut, pos = colormap_lut(colormap), norm
    return lut[np.clip((pos * 255).round(), 0, 255).astype(np.int64)]


def overlay(image: np.ndarray, raw: np.ndarray, settings: DisplaySettings = DisplaySettings()) -> np.ndarray:
    """Draw ``raw`` ``(C, H, W)`` over ``image`` ``(H, W, 3)`` ``uint8`` as the settings say."""
    norm = normalise(aggregate(raw, settings.aggregation), settings.sign, settings.clip_percentile)
    colours = colorize(norm, settings.colormap, signed=settings.sign == "signed")
    if colours.shape[:2] != image.shape[:2]:
        colours = np.asarray(Image.fromarray(colours).resize(image.shape[1::-1], Image.Resampling.BILINEAR))
    a = float(np.clip(settings.alpha, 0.0, 1.0))
    return (image.astype(np.float32) * (1 - a) + colours.astype(np.float32) * a).round().astype(np.uint8)


def grid_png(rows: list[str], cols: list[str], cells: list[list[np.ndarray | None]], cell: int = 224) -> bytes:
    """A labelled grid (one row per target, one column per method) as PNG bytes; ``None`` cells stay blank. Titles
    are set in DejaVu Sans (:func:`_font`) at a size read on a projector; a column title longer than its cell ends
    in "…", a row title wraps onto up to three lines."""
    size = 14 if cell >= 128 else 12
    font = _font(size)
    pad, line = 6, size + 4
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(measure, title, font, 158) for title in rows]
    side = max([measure.textlength(t, font=font) for lines in wrapped for t in lines] + [0.0])
    side = int(side) + 18 if side else pad  # as wide as the longest row title: "layer 0" needs less than a class
    head = line + 10
    width = side + len(cols) * (cell + pad) + pad
    height = head + len(rows) * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(cols):
        draw.text((side + pad + j * (cell + pad), 6), _fit(draw, title, font, cell), fill="black", font=font)
    for i, lines in enumerate(wrapped):
        y = head + i * (cell + pad)
        top = y + (cell - len(lines) * line) // 2
        for k, text in enumerate(lines):
            draw.text((6, top + k * line), text, fill="black", font=font)
        for j, img in enumerate(cells[i]):
            if img is not None:
                tile = Image.fromarray(img).resize((cell, cell), Image.Resampling.BILINEAR)
                canvas.paste(tile, (side + pad + j * (cell + pad), y))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def _font(size: int):
    """DejaVu Sans at ``size`` px: it has the glyphs of class names in most European scripts (é, ß, ×, —, Cyrillic,
    Greek), which Pillow's own Aileron lacks. It ships with matplotlib, which Captum requires; without it, Aileron."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)  # Pillow's Aileron (its bitmap font where FreeType is missing)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut to ``width`` pixels, ending in "…" where it was cut."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, most: int = 3) -> list[str]:
    """``text`` in lines of at most ``width`` pixels, broken at spaces; at most ``most`` lines, the last cut."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > most:
        lines = lines[: most - 1] + [" ".join(lines[most - 1 :])]
    return [_fit(draw, t, font, width) for t in lines]
