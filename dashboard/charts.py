"""Plotly figures. Pure functions of engine results; no widgets."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from interp.attribution.display import DisplaySettings, aggregate
from interp.predict import Prediction
from interp.words import short_label

_STREAMLIT_PLACEHOLDER = re.compile(r"^#0000([0-3]\d|40)$", re.IGNORECASE)


def colour_scale(name: str) -> list[list]:
    """Plotly's colour scale ``name`` as explicit stops that Streamlit shows as they are. Streamlit's chart theme
    uses the colours #000001 to #000040 as placeholders and replaces them anywhere in a figure with its own; Inferno
    and Magma begin at #000004, so their lowest values came out pink. Such a stop is written as ``rgb()``."""
    from plotly.colors import get_colorscale, hex_to_rgb

    return [[pos, f"rgb{hex_to_rgb(c)}" if _STREAMLIT_PLACEHOLDER.match(c) else c] for pos, c in get_colorscale(name)]


def md(text: str) -> str:
    """``text`` shown as itself inside Markdown: class names come from users' files, and ``**``, ``[x](url)``,
    ``:red[…]`` or ``$…$`` in one must not be rendered. Every ASCII punctuation mark gets a backslash."""
    return _MD_SPECIAL.sub(r"\\\g<0>", text)


def plot_text(text: str) -> str:
    """``text`` shown as itself in a plotly label or hover (plotly renders some HTML: ``<b>``, ``<a href>``)."""
    return html.escape(text, quote=False)


_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]()#+\-.!|<>~$:&]")


def row_gap(height_px: int, margins_px: int, rows: int, gap_px: int = 26) -> float:
    """``make_subplots``'s ``vertical_spacing`` (a fraction of the plotting height) for ``gap_px`` pixels between
    rows: a fixed fraction left a short grid's titles on the row above and a tall one's rows far apart."""
    if rows < 2:
        return 0.0
    return min(gap_px / max(height_px - margins_px, 1), 0.9 / (rows - 1))


def topk_bar(prediction: Prediction) -> go.Figure:
    """Horizontal bars of the top-k probabilities, best at the top; hover shows the full label and index."""
    scores = list(reversed(prediction.scores))
    fig = go.Figure(
        go.Bar(
            x=[s.prob for s in scores],
            y=[f"{plot_text(short_label(s.label))} " for s in scores],
            orientation="h",
            text=[f"{s.prob:.1%}" for s in scores],
            textposition="auto",
            customdata=[[plot_text(s.label), s.index] for s in scores],
            hovertemplate="%{customdata[0]}<br>class %{customdata[1]}<br>p = %{x:.3f}<extra></extra>",
            marker_color="#4c78a8",
        )
    )
    fig.update_layout(
        height=60 + 48 * len(scores),
        margin=dict(l=10, r=10, t=10, b=30),
        xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"),
        yaxis=dict(automargin=True),
    )
    return fig


def attribution_figure(
    shown: np.ndarray, raw: np.ndarray, display: DisplaySettings, hover_cells: int = 56, height: int = 230
) -> dict:
    """The overlay as a PNG image, with an invisible heatmap on top so that hovering shows the map's values.

    The heatmap holds block means on a ``hover_cells``² grid: full resolution would put ~50k numbers per cell in
    the page and make every rerun slow.
    """
    values = aggregate(raw, display.aggregation)
    h, w = values.shape
    step = max(1, h // hover_cells)
    blocks = values[: h - h % step, : w - w % step].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    centres = np.arange(blocks.shape[1]) * step + (step - 1) / 2
    rows = np.arange(blocks.shape[0]) * step + (step - 1) / 2
    return {
        "data": [
            {"type": "image", "source": png_data_uri(shown), "hoverinfo": "skip"},
            {
                "type": "heatmap",
                "z": blocks.astype(np.float32),  # numpy, not lists: plotly validates arrays in one step
                "x": centres,
                "y": rows,
                "opacity": 0,
                "showscale": False,
                "hovertemplate": "x %{x}, y %{y}<br>value %{z:.4g}<extra></extra>",
            },
        ],
        "layout": {
            "height": height,
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "xaxis": {"visible": False, "range": [-0.5, w - 0.5]},
            "yaxis": {"visible": False, "range": [h - 0.5, -0.5], "scaleanchor": "x"},
        },
    }


def png_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    """For photos shown many at a time: a fifth of the PNG's size (a chelsea overlay at 128 px: 8 KB against 42)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def curves_figure(curves, floor, title: str, height: int = 300) -> go.Figure:
    """Deletion and insertion curves of a map (solid) and of a random map (dotted), class probability against the
    share of pixels removed or revealed (in squares of ``curves.block`` pixels); the areas under them are the
    scores."""
    fig = go.Figure()
    for name, colour in (("deletion", "#d62728"), ("insertion", "#1f77b4")):
        fig.add_scatter(x=curves.fractions, y=getattr(curves, name), mode="lines+markers", line={"color": colour},
                        name=f"{plot_text(title)} {name} (AUC {getattr(curves, f'{name}_auc'):.3f})")  # fmt: skip
        fig.add_scatter(x=floor.fractions, y=getattr(floor, name), mode="lines", line={"color": colour, "dash": "dot"},
                        name=f"random maps {name} (AUC {getattr(floor, f'{name}_auc'):.3f})")  # fmt: skip
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend={"font": {"size": 11}},
                      xaxis_title="share of pixels removed (deletion) or revealed (insertion)"
                      + ("" if curves.block == 1 else f", in {curves.block}×{curves.block} squares"),
                      yaxis_title="class probability")  # fmt: skip
    return fig


def scoreboard_figure(table, height: int = 260) -> go.Figure:
    """Each map's margin over the random maps, both scores turned so that longer bars are better: insertion above
    the random maps', and deletion below it; the whiskers are the random maps' spread."""
    names = [plot_text(f"{m} · {c}") for m, c in zip(table["method"], table["class"])]
    fig = go.Figure()
    for name, gain, spread in (("insertion gain", table["insertion"] - table["random insertion"], "insertion spread"),
                               ("deletion gain", table["random deletion"] - table["deletion"], "deletion spread")):
        whiskers = {"type": "data", "array": table[spread]} if spread in table else None  # random maps' spread
        fig.add_bar(y=names, x=gain, orientation="h", name=name, error_x=whiskers)
    fig.update_layout(height=height, barmode="group", margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      xaxis_title="better than random maps by (AUC)", yaxis={"autorange": "reversed"},
                      legend={"orientation": "h", "y": -0.3})  # fmt: skip
    return fig


def sanity_figure(check, height: int = 260) -> go.Figure:
    """The randomisation cascade: the map's rank correlation and SSIM with the trained model's map after each step
    (top layer first)."""
    layers = [plot_text(s.layer) for s in check.steps]
    fig = go.Figure()
    fig.add_scatter(x=layers, y=[s.spearman for s in check.steps], mode="lines+markers", name="rank correlation")
    fig.add_scatter(x=layers, y=[s.ssim for s in check.steps], mode="lines+markers", name="SSIM")
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 10, "b": 0}, yaxis={"range": [-0.2, 1.05]},
                      xaxis_title="randomised down to (top layer first)", yaxis_title="similarity to the trained map",
                      legend={"orientation": "h", "y": -0.45})  # fmt: skip
    return fig
