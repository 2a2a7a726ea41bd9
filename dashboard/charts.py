"""Plotly figures. Pure functions of engine results; no widgets."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from interp.attribution.display import DisplaySettings, aggregate
from interp.predict import Prediction


def short_label(label: str) -> str:
    """ImageNet descriptions list synonyms ("tabby, tabby cat"); the first reads best on an axis."""
    return label.split(",")[0].strip()


def topk_bar(prediction: Prediction) -> go.Figure:
    """Horizontal bars of the top-k probabilities, best at the top; hover shows the full label and index."""
    scores = list(reversed(prediction.scores))
    fig = go.Figure(
        go.Bar(
            x=[s.prob for s in scores],
            y=[f"{short_label(s.label)} " for s in scores],
            orientation="h",
            text=[f"{s.prob:.1%}" for s in scores],
            textposition="auto",
            customdata=[[s.label, s.index] for s in scores],
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


def attribution_figure(shown: np.ndarray, raw: np.ndarray, display: DisplaySettings) -> go.Figure:
    """The overlay as an image, with an invisible heatmap on top so that hovering shows the map's values."""
    values = aggregate(raw, display.aggregation)
    fig = go.Figure(go.Image(z=shown, hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(z=values, opacity=0, showscale=False, hovertemplate="x %{x}, y %{y}<br>value %{z:.4g}<extra></extra>")
    )
    fig.update_layout(height=230, margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(visible=False),
                      yaxis=dict(visible=False, autorange="reversed", scaleanchor="x"))  # fmt: skip
    return fig
