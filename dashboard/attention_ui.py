"""Widgets and views of the Attention page. One capture per (model, image, class) feeds every view, so moving a
slider or picking another head redraws from memory and never runs the model again."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, permalink, resources, state
from dashboard.feedback import attempt, sentence
from interp.attention import (
    HEAD_FUSIONS,
    AttentionCapture,
    HeadStats,
    NotAViTError,
    class_maps,
    cls_maps,
    head_stats,
    patch_maps,
    rollout_map,
)
from interp.attention.capture import check_vit
from interp.attention.render import draw, mark_patch
from interp.attribution.display import grid_png
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.predict import Prediction

OFFLINE_VIT = "shapes_vit"
SHAPES_SAMPLE = "shapes_star"
MATRIX_MAX_TOKENS = 600  # a bigger token × token heatmap is block-averaged so the page stays quick


def vit_check_ui(model: LoadedModel) -> bool:
    """Whether ``model`` has attention to show; otherwise say so, with the ways to get a ViT."""
    try:
        check_vit(model)
        return True
    except NotAViTError as exc:
        st.info(
            sentence(str(exc)) + " With no network, use shapes_vit (trained here on the shapes world, bundled) or "
            "load a ViT's weights file in the sidebar; online, any timm ViT or DeiT name works, and a filled hub "
            "cache works offline too."
        )
    rows = {r["name"]: r for r in resources.model_rows()}
    if OFFLINE_VIT in rows and rows[OFFLINE_VIT]["available"]:
        st.button(f"Switch to {OFFLINE_VIT} and a shapes-world image", on_click=_switch_model, args=(OFFLINE_VIT,),
                  key="attn_switch")
    return False


def _switch_model(name: str) -> None:
    """Switch to the offline ViT, and to an image of the world it knows: on a photo its every map is meaningless."""
    state.put("model_select", name)
    if st.session_state.get("_image", {}).get("kind") != "dataset":
        st.session_state["_image"] = {"kind": "sample", "name": SHAPES_SAMPLE}


def target_ui(model: LoadedModel, prediction: Prediction) -> int:
    """The class for the class-specific maps: the prediction by default, any class by name."""
    probs = {s.index: s.prob for s in prediction.scores}
    options = list(probs) + [i for i in range(model.num_classes) if i not in probs]

    def label(i: int) -> str:
        name = charts.short_label(model.class_names[i])
        return f"{name} ({probs[i]:.1%})" if i in probs else f"{name} [{i}]"

    key = f"attn_target_{model.key}_{prediction.top.index}"  # a new image or model starts from its prediction
    linked = permalink.take_class("target", model.num_classes, model.name)
    if linked is not None:
        state.put(key, linked)
    state.restore(key, prediction.top.index)
    target = st.selectbox(
        "Class for the class-specific maps",
        options,
        key=key,
        on_change=state.keep,
        args=(key,),
        format_func=label,
        help="Gradient-weighted rollout and Chefer et al.'s relevance explain this class; the other views do not "
        "depend on it.",
    )
    permalink.publish(target=None if target == prediction.top.index else str(target))
    return target


def capture_ui(model: LoadedModel, image: LoadedImage, target: int) -> AttentionCapture | None:
    return attempt(lambda: resources.attention(model.key, image.digest, target, model, image), "capturing attention")


def summary_caption(model: LoadedModel, cap: AttentionCapture) -> None:
    rows, cols = cap.grid
    kind = "the class token's row" if cap.has_cls else "the mean of the patch rows (this model has no class token)"
    st.caption(
        f"{model.name}: {cap.layers} layers × {cap.heads} heads, {cap.tokens} tokens ({cap.prefix_tokens} prefix + a "
        f"{rows}×{cols} grid of {cap.patch_px[0]:g}-px patches). Maps over the image read {kind}. Every map is scaled "
        "to its own maximum."
    )


# ------------------------------------------------------------------------------------------------- layers × heads


def heads_view(ident: str, cap: AttentionCapture, base: np.ndarray) -> None:
    """Small multiples of every layer and head, the head-mean strip across depth, and one cell enlarged."""
    maps = cls_maps(cap)
    means = maps.mean(axis=1)
    st.markdown("**Each layer's head-averaged map, first layer on the left**")
    st.image(_grid(f"{ident}-strip", [""], [f"layer {i}" for i in range(cap.layers)], [[draw(base, m) for m in means]], 160),
             width="stretch")  # fmt: skip
    st.markdown("**Every head of every layer** (rows: layers; columns: heads, then their mean)")
    cells = [[draw(base, maps[l, h]) for h in range(cap.heads)] + [draw(base, means[l])] for l in range(cap.layers)]
    cols = [f"head {h}" for h in range(cap.heads)] + ["mean"]
    st.image(_grid(f"{ident}-heads", [f"layer {l}" for l in range(cap.layers)], cols, cells, 112), width="stretch")
    left, right = st.columns([1, 2])
    with left:
        layer = st.selectbox("Layer", range(cap.layers), index=cap.layers - 1, key="attn_layer", bind="query-params")
        head = st.selectbox("Head", ["mean", *range(cap.heads)], key="attn_head", bind="query-params")
    shown = means[layer] if head == "mean" else maps[layer, head]
    with right:
        st.plotly_chart(map_figure(draw(base, shown), shown, f"layer {layer}, head {head}"), key="attn_enlarged",
                        config={"displayModeBar": False})  # fmt: skip


@st.cache_data(max_entries=32, show_spinner=False)
def _grid(identity: str, rows: list[str], cols: list[str], _cells: list, cell: int) -> bytes:
    """A labelled grid PNG; ``identity`` names the capture and view, so a rerun reuses the encoded image."""
    return grid_png(rows, cols, _cells, cell=cell)


def map_figure(shown: np.ndarray, grid_map: np.ndarray, title: str, height: int = 420) -> go.Figure:
    """An overlay with one invisible cell per patch on top, so hovering gives the patch and its value."""
    h, w = shown.shape[:2]
    rows, cols = grid_map.shape
    fig = go.Figure(go.Image(z=shown, hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=grid_map.astype(np.float32),
            x=(np.arange(cols) + 0.5) * w / cols,
            y=(np.arange(rows) + 0.5) * h / rows,
            opacity=0,
            showscale=False,
            customdata=np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), axis=-1),
            hovertemplate="patch (%{customdata[1]}, %{customdata[0]})<br>attention %{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=height, margin=dict(l=0, r=0, t=30, b=0),
                      xaxis=dict(visible=False), yaxis=dict(visible=False))  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------- rollout and class


def rollout_view(model: LoadedModel, cap: AttentionCapture, base: np.ndarray) -> dict[str, np.ndarray]:
    """Rollout with its settings beside the two class-specific maps; returns the maps shown (for downloads)."""
    c1, c2 = st.columns(2)
    fusion = c1.radio("Head fusion", HEAD_FUSIONS, horizontal=True, key="attn_fusion", bind="query-params",
                      help="How each layer's heads are combined before rolling out.")  # fmt: skip
    discard = c2.slider("Discard ratio", 0.0, 0.99, 0.9, 0.01, key="attn_discard", bind="query-params",
                        help="The lowest share of each layer's weights set to 0 (never the class token's): it "
                        "removes faint, noisy attention. 0 is the plain rollout of Abnar & Zuidema.")  # fmt: skip
    maps = {f"rollout ({fusion}, discard {discard:.2f})": rollout_map(cap, fusion, discard)}
    maps.update({f"{k} · {charts.short_label(model.class_names[cap.target])}": v for k, v in class_maps(cap, discard).items()})
    for i, (col, (title, m)) in enumerate(zip(st.columns(len(maps)), maps.items(), strict=True)):
        with col:
            st.plotly_chart(map_figure(draw(base, m), m, title, height=330), key=f"attn_roll_{i}",
                            config={"displayModeBar": False})  # fmt: skip
    st.caption(
        "Rollout (Abnar & Zuidema 2020) multiplies the layers' attention, with the residual connection, to trace "
        "what reaches the class token; it is the same for every class. Gradient rollout weights each layer's "
        "attention by its gradient for the class. Chefer relevance (Chefer et al. 2021) accumulates "
        "gradient × attention through the layers; we use the attention for the LRP relevance of the CVPR paper, "
        "as the authors' ICCV 2021 follow-up does."
    )
    return maps


# ------------------------------------------------------------------------------------------------- from a patch


def patch_view(ident: str, cap: AttentionCapture, base: np.ndarray) -> None:
    """Pick a patch by clicking it (or with the row and column boxes); see where it attends in every layer."""
    rows, cols = cap.grid
    state.restore("attn_row", rows // 2)
    state.restore("attn_col", cols // 2)
    linked = permalink.take_one("patch")
    if linked is not None:
        row, _, col = linked.partition(",")
        if row.strip().isdigit() and col.strip().isdigit() and int(row) < rows and int(col) < cols:
            state.put("attn_row", int(row))
            state.put("attn_col", int(col))
        else:
            permalink.note(f"The link's patch “{linked}” is not a row and a column of this model's {rows}×{cols} "
                           "grid (e.g. 3,5); showing the centre.")  # fmt: skip
    for key, size in (("attn_row", rows), ("attn_col", cols)):  # a patch kept from a model with a larger grid
        if not 0 <= int(st.session_state[key]) < size:
            state.put(key, size // 2)
    left, right = st.columns([1, 2])
    with left:
        marked = mark_patch(base, cap.grid, int(st.session_state.attn_row), int(st.session_state.attn_col))
        st.plotly_chart(_click_figure(marked, cap.grid), key="attn_click", selection_mode="points",
                        on_select=functools.partial(_take_click, cap.grid, base.shape[:2]),
                        config={"displayModeBar": False})  # fmt: skip
        st.caption("Click a patch, or set its row and column.")
        c1, c2 = st.columns(2)
        row = c1.number_input("Row", 0, rows - 1, key="attn_row", on_change=state.keep, args=("attn_row",))
        col = c2.number_input("Column", 0, cols - 1, key="attn_col", on_change=state.keep, args=("attn_col",))
    permalink.publish(patch=None if (row, col) == (rows // 2, cols // 2) else f"{row},{col}")
    maps = patch_maps(cap, int(row), int(col)).mean(axis=1)
    with right:
        st.markdown(f"**Where patch ({row}, {col}) attends, each layer's heads averaged**")
        per_row = 4
        cells = [[mark_patch(draw(base, m), cap.grid, int(row), int(col)) for m in maps[i : i + per_row]]
                 for i in range(0, cap.layers, per_row)]  # fmt: skip
        names = [f"layers {i}-{min(i + per_row, cap.layers) - 1}" for i in range(0, cap.layers, per_row)]  # PIL font: ASCII
        st.image(_grid(f"{ident}-patch-{row}-{col}", names, [f"+{j}" for j in range(per_row)], cells, 150), width="stretch")


def _click_figure(shown: np.ndarray, grid: tuple[int, int]) -> go.Figure:
    h, w = shown.shape[:2]
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    fig = go.Figure(go.Image(z=shown, hoverinfo="skip"))
    fig.add_trace(
        go.Scatter(
            x=(c + 0.5) * w / cols,
            y=(r + 0.5) * h / rows,
            mode="markers",
            marker=dict(symbol="square", size=max(6, 300 // max(rows, cols)), color="rgba(255,255,255,0.01)"),
            customdata=np.stack([r, c], axis=1),
            hovertemplate="patch (%{customdata[0]}, %{customdata[1]})<extra></extra>",
        )
    )
    fig.update_layout(height=330, margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(visible=False),
                      yaxis=dict(visible=False), clickmode="event+select", dragmode=False, showlegend=False)  # fmt: skip
    return fig


def _take_click(grid: tuple[int, int], size: tuple[int, int]) -> None:
    """``on_select`` of the image: the clicked patch becomes the query."""
    event = st.session_state.get("attn_click") or {}
    points = (event.get("selection") or {}).get("points") or []
    if not points or "x" not in points[0] or "y" not in points[0]:
        return
    row, col = patch_at(float(points[0]["y"]), float(points[0]["x"]), grid, size)
    state.put("attn_row", row)
    state.put("attn_col", col)


def patch_at(y: float, x: float, grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The ``(row, col)`` of the patch under pixel ``(y, x)`` of an image of ``size`` ``(h, w)``."""
    rows, cols = grid
    return min(rows - 1, max(0, int(y * rows / size[0]))), min(cols - 1, max(0, int(x * cols / size[1])))


# ------------------------------------------------------------------------------------------------ token matrix


def matrix_view(cap: AttentionCapture) -> None:
    """One layer's and head's token × token attention as an interactive heatmap."""
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer ", range(cap.layers), key="attn_matrix_layer", bind="query-params")
    head = c2.selectbox("Head ", range(cap.heads), key="attn_matrix_head", bind="query-params")
    matrix = cap.attn[layer, head]
    step = -(-cap.tokens // MATRIX_MAX_TOKENS)
    names = [cap.token_name(i) for i in range(cap.tokens)]
    if step > 1:
        n = cap.tokens - cap.tokens % step
        matrix = matrix[:n, :n].reshape(n // step, step, n // step, step).mean(axis=(1, 3))
        names = [f"{names[i]}…" for i in range(0, n, step)]
        st.caption(f"{cap.tokens} tokens: shown as means of {step}×{step} blocks.")
    fig = go.Figure(
        go.Heatmap(
            z=matrix.astype(np.float32), x=names, y=names, colorscale=charts.colour_scale("Inferno"),
            colorbar=dict(title="weight"),
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(height=620, margin=dict(l=0, r=0, t=10, b=0), yaxis=dict(autorange="reversed", showticklabels=False),
                      xaxis=dict(showticklabels=False))  # fmt: skip
    st.plotly_chart(fig, key="attn_matrix", config={"displayModeBar": False})
    st.caption("Rows are queries, columns keys; each row sums to 1. Token 0 onwards: "
               + ", ".join(names[: cap.prefix_tokens + 2]) + "…")  # fmt: skip


# ---------------------------------------------------------------------------------------------- head statistics


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
            f"(evenly: {stats.max_entropy:.2f})."
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
    """One dot per head against its layer, coloured by head, the picked head ringed; a dashed line at ``even``."""
    is_picked = [(layer, head) == picked for layer, head in zip(table["layer"], table["head"], strict=True)]
    fig = go.Figure(
        go.Scatter(
            x=table["layer"], y=table[column], mode="markers",
            marker=dict(size=[15 if p else 9 for p in is_picked], color=table["head"], colorscale="Viridis",
                        line=dict(width=[3 if p else 0 for p in is_picked], color="#d62728"), showscale=True,
                        colorbar=dict(title="head", tickmode="array", tickvals=sorted(table["head"].unique()))),
            unselected=dict(marker=dict(opacity=1)),  # a click picks a head; it does not grey the others out
            customdata=table[["head"]], hovertemplate="layer %{x}, head %{customdata[0]}<br>%{y:.3f}<br>"
            "click to see this head<extra></extra>",
        )
    )  # fmt: skip
    fig.add_hline(y=even, line=dict(dash="dash", width=1, color="grey"), annotation_text="evenly",
                  annotation_position="bottom right")  # fmt: skip
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=40), title=dict(text=title, font=dict(size=13)),
                      xaxis=dict(title="layer", dtick=1), clickmode="event+select", dragmode=False)  # fmt: skip
    return fig


# -------------------------------------------------------------------------------------------------- downloads


def downloads_ui(model: LoadedModel, image: LoadedImage, cap: AttentionCapture, base: np.ndarray,
                 maps: dict[str, np.ndarray]) -> None:  # fmt: skip
    stem = f"{model.name}_{image.name.rsplit('.', 1)[0]}"

    def maps_png() -> bytes:
        return grid_png([""], list(maps), [[draw(base, m) for m in maps.values()]], cell=256)

    def npz() -> bytes:
        buf = io.BytesIO()
        extra = {"grads": cap.grads} if cap.grads is not None else {}
        np.savez_compressed(buf, attn=cap.attn, logits=cap.logits, input=base, cls_maps=cls_maps(cap),
                            **{k.split(" ·")[0].replace(" ", "_"): v for k, v in maps.items()}, **extra)  # fmt: skip
        return buf.getvalue()

    def stats_json() -> str:
        return json.dumps({"model": model.name, "image": image.name, "heads": head_stats(cap).rows()}, indent=2)

    c1, c2, c3 = st.columns(3)
    c1.download_button("Maps as PNG", maps_png, f"{stem}_attention.png", "image/png", key="attn_dl_png")
    c2.download_button("Captured attention (.npz)", npz, f"{stem}_attention.npz", "application/octet-stream",
                       key="attn_dl_npz", help="attn (layers, heads, tokens, tokens), grads for the class, maps.")  # fmt: skip
    c3.download_button("Head statistics (JSON)", stats_json, f"{stem}_heads.json", "application/json", key="attn_dl_json")
