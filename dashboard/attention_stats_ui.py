"""The Attention page's head statistics: each head's mean attention distance and entropy against depth, every dot
a button that shows that head's maps and where it ranks among the heads."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.attention_ui import map_figure
from dashboard.feedback import guarded
from interp.attention import AttentionCapture, HeadStats, cls_maps, head_stats, patch_maps
from interp.attention.render import draw, mark_patch
from interp.words import percent

SINK = 0.5
"""A head whose patches send at least this share of their attention to the prefix tokens is called a sink."""
DOT = "#1f77b4"


@st.cache_data(max_entries=8, show_spinner=False)
def _head_stats(ident: str, _cap: AttentionCapture):
    """Head statistics once per capture (``ident`` names it), not on every rerun."""
    return head_stats(_cap)


def stats_view(ident: str, cap: AttentionCapture, base: np.ndarray) -> pd.DataFrame:
    """Mean attention distance and entropy of each head against depth, each dot a button that shows its head's maps;
    returns the table."""
    stats = _head_stats(ident, cap)
    table = pd.DataFrame(stats.rows())
    picked = picked_head(cap)
    charts_ = {
        "attn_distance": _scatter(table, "distance_px", "mean attention distance (pixels)", stats.uniform_distance_px,
                                  picked),
        "attn_entropy": _scatter(table, "entropy", "attention entropy (nats)", stats.max_entropy, picked),
    }  # fmt: skip
    for col, (name, fig) in zip(st.columns(2), charts_.items(), strict=True):
        key = f"{name}-{picked}"  # a new chart per pick: a click on the dot picked before (from here) counts again
        with col:
            st.plotly_chart(fig, key=key, selection_mode="points", config={"displayModeBar": False},
                            on_select=functools.partial(_take_head, key, cap.heads, len(table)))  # fmt: skip
    st.caption(
        "Each dot is one head; click one to see its maps below (it is also the head enlarged under *Layers × heads*). "
        "Distance: how far, in pixels of the model's input, a patch looks on average (Figure 7 of Dosovitskiy et al. "
        "2021): low heads look locally, high ones globally. Entropy: how spread out the attention rows are. The dashed "
        f"lines are a head that spreads its attention evenly: {stats.uniform_distance_px:.1f} px and "
        f"{stats.max_entropy:.2f} nats."
        + (" An open circle is a sink: a head whose patches send more than half of their attention to the class token "
           "(or the other prefix tokens)." if (stats.prefix_share >= SINK).any() else "")
    )
    head_maps(cap, base, stats, picked)
    with st.expander("Table"):
        st.dataframe(table, hide_index=True)
    return table


def picked_head(cap: AttentionCapture) -> tuple[int, int] | None:
    """The ``(layer, head)`` enlarged under *Layers × heads*, or ``None`` while that shows a layer's mean."""
    layer, head = st.session_state.get("attn_layer", cap.layers - 1), st.session_state.get("attn_head", "mean")
    if head == "mean" or not (0 <= int(layer) < cap.layers and 0 <= int(head) < cap.heads):
        return None
    return int(layer), int(head)


def _prefix_sentence(cap: AttentionCapture, share: float) -> str:
    """What the head's patches send to the class token (or the other prefix tokens); above half, that its distance
    is measured on the rest."""
    if not cap.prefix_tokens:
        return ""
    said = f" Its patches send {percent(share)} of their attention to {cap.prefix_name}"
    if share >= SINK:
        return said + ", more than to the image (a sink); its distance is measured on the rest."
    return said + "."


@guarded("picking the clicked head")
def _take_head(key: str, heads: int, n: int) -> None:
    """``on_select`` of a head statistics chart: the clicked head becomes the enlarged one. A dot's index is its row
    of the table (layer by layer, ``heads`` per layer, ``n`` in all)."""
    points = ((st.session_state.get(key) or {}).get("selection") or {}).get("points") or []
    index = points[0].get("point_index") if points else None
    if isinstance(index, int) and 0 <= index < n:
        st.session_state["attn_layer"], st.session_state["attn_head"] = divmod(index, heads)


def head_maps(cap: AttentionCapture, base: np.ndarray, stats: HeadStats, picked: tuple[int, int] | None) -> None:
    """The picked head's maps (what the classifier's row reads, and where the chosen patch looks) with its ranks; with
    no head picked, where the chosen patch looks in the most local and the most global head."""
    row = int(st.session_state.get("attn_row", cap.grid[0] // 2))
    col = int(st.session_state.get("attn_col", cap.grid[1] // 2))
    from_patch = patch_maps(cap, row, col)
    n = cap.layers * cap.heads
    where = f"patch ({row}, {col})"

    def patch_map(layer: int, head: int, title: str) -> go.Figure:
        m = from_patch[layer, head]
        return map_figure(mark_patch(draw(base, m), cap.grid, row, col), m, title, height=330)

    if picked is None:
        shape = stats.distance_px.shape
        local, wide = (tuple(int(i) for i in np.unravel_index(k, shape)) for k in (stats.distance_px.argmin(),
                                                                                    stats.distance_px.argmax()))
        st.markdown(f"**Click a dot to see one head.** Meanwhile, where {where} looks in the most local and the most "
                    f"global of the {n} heads:")  # fmt: skip
        figures = {
            f"most local: layer {local[0]}, head {local[1]} ({stats.distance_px[local]:.1f} px)": local,
            f"most global: layer {wide[0]}, head {wide[1]} ({stats.distance_px[wide]:.1f} px)": wide,
        }
        for i, (c, (title, (layer, head))) in enumerate(zip(st.columns(2), figures.items(), strict=True)):
            with c:
                st.plotly_chart(patch_map(layer, head, title), key=f"attn_stats_map_{i}",
                                config={"displayModeBar": False})  # fmt: skip
    else:
        layer, head = picked
        distance, spread = stats.distance_px[layer, head], stats.entropy[layer, head]
        st.markdown(
            f"**Layer {layer}, head {head}** looks {distance:.1f} px away on average, "
            f"{_rank(stats.distance_px, distance, 'local', 'global')} (evenly: {stats.uniform_distance_px:.1f} px); "
            f"its rows' entropy is {spread:.2f} nats, {_rank(stats.entropy, spread, 'focused', 'spread out')} "
            f"(evenly: {stats.max_entropy:.2f}).{_prefix_sentence(cap, stats.prefix_share[layer, head])}"
        )
        reads = "the class token" if cap.has_cls else "the mean patch query"
        c1, c2 = st.columns(2)
        with c1:
            m = cls_maps(cap)[layer, head]
            st.plotly_chart(map_figure(draw(base, m), m, f"where {reads} looks", height=330), key="attn_stats_map_0",
                            config={"displayModeBar": False})  # fmt: skip
        with c2:
            st.plotly_chart(patch_map(layer, head, f"where {where} looks"), key="attn_stats_map_1",
                            config={"displayModeBar": False})  # fmt: skip
    st.caption(f"The patch is the one chosen under *From a patch*. Heads are numbered from 0 in each layer, {n} in "
               "all.")  # fmt: skip


def _rank(values: np.ndarray, value: float, low: str, high: str) -> str:
    """Where ``value`` stands among ``values``, from the nearer end: "the most local of 16 heads", "3rd most global of
    16"."""
    n = values.size
    below = int((values < value).sum())  # ties share the better rank
    above = int((values > value).sum())
    if below <= above:
        return f"the most {low} of {n} heads" if below == 0 else f"{_ordinal(below + 1)} most {low} of {n}"
    return f"the most {high} of {n} heads" if above == 0 else f"{_ordinal(above + 1)} most {high} of {n}"


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _scatter(table: pd.DataFrame, column: str, title: str, even: float, picked: tuple[int, int] | None) -> go.Figure:
    """One dot per head against its layer, the picked head ringed, a sink (more than half of its attention on the
    prefix tokens) an open circle; a dashed line at ``even``. One colour for every dot: head 3 of one layer has
    nothing to do with head 3 of the next, and a colour scale by head number read as if it had (the hover and a
    click name the head)."""
    is_picked = [(layer, head) == picked for layer, head in zip(table["layer"], table["head"], strict=True)]
    sink = table["prefix_share"] >= SINK
    fig = go.Figure(
        go.Scatter(
            x=table["layer"], y=table[column], mode="markers",
            marker=dict(size=[15 if p else 9 for p in is_picked], color=DOT,
                        symbol=["circle-open" if s else "circle" for s in sink],
                        line=dict(width=[3 if p else 0 for p in is_picked], color="#d62728")),
            unselected=dict(marker=dict(opacity=1)),  # a click picks a head; it does not grey the others out
            customdata=table[["head", "prefix_share"]], hovertemplate="layer %{x}, head %{customdata[0]}<br>%{y:.3f}"
            "<br>%{customdata[1]:.0%} to the prefix<br>click to see this head<extra></extra>",
        )
    )  # fmt: skip
    fig.add_hline(y=even, line=dict(dash="dash", width=1, color="grey"), annotation_text="evenly",
                  annotation_position="bottom right")  # fmt: skip
    last = int(table["layer"].max())
    room = max(0.6, 0.12 * (last + 1))  # empty space right of the last layer, where the line's label sits, off the dots
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=40), title=dict(text=title, font=dict(size=13)),
                      xaxis=dict(title="layer", tickmode="array", tickvals=list(range(last + 1)),  # none in the room
                                 range=[-0.5, last + 0.5 + room]),
                      clickmode="event+select", dragmode=False)  # fmt: skip
    return fig
