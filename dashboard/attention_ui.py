"""Widgets and views of the Attention page. One capture per (model, image, class) feeds every view, so moving a
slider or picking another head redraws from memory and never runs the model again."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, permalink, resources, state
from dashboard.feedback import attempt, guarded, quoted, sentence
from interp.attention import (
    HEAD_FUSIONS,
    AttentionCapture,
    NotAViTError,
    class_maps,
    cls_maps,
    head_stats,
    patch_maps,
    rollout_map,
)
from interp.attention.capture import check_vit
from interp.attention.render import draw, heads_grid, mark_patch
from interp.attribution.display import grid_png
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.predict import Prediction

OFFLINE_VIT = "shapes_vit"
SHAPES_SAMPLE = "shapes_star"
MATRIX_MAX_TOKENS = 600  # a bigger token × token heatmap is block-averaged so the page stays quick


def vit_check_ui(model: LoadedModel | None) -> bool:
    """Whether ``model`` has attention to show; otherwise say so, with the ways to get a ViT. ``None`` (the model
    could not be loaded, and the page said why: offline, a hub ViT) gets the offer to switch to the bundled one too."""
    if model is not None:
        try:
            check_vit(model)
            return True
        except NotAViTError as exc:
            st.info(
                sentence(str(exc)) + " With no network, use shapes_vit (trained here on the shapes world, bundled) "
                "or load a ViT's weights file in the sidebar; online, any timm ViT or DeiT name works, and a filled "
                "hub cache works offline too."
            )
    if resources.model_choices().get(OFFLINE_VIT) and state.get("model_select") != OFFLINE_VIT:
        st.button(f"Switch to {OFFLINE_VIT} and a shapes-world image", on_click=_switch_model, args=(OFFLINE_VIT,),
                  key="attn_switch")
    return False


@guarded("switching the model")
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
    st.image(_grid(f"{ident}-heads", *heads_grid(maps, base), 112), width="stretch")
    left, right = st.columns([1, 2])
    with left:
        # The last layer by default; no default while the widget holds one of this model's layers (a clicked head
        # sets it through the Session State API, and Streamlit logs a default given beside that as a clash).
        last = {} if st.session_state.get("attn_layer") in range(cap.layers) else {"index": cap.layers - 1}
        layer = permalink.linked(st.selectbox, "Layer", range(cap.layers), key="attn_layer", **last)
        head = permalink.linked(st.selectbox, "Head", ["mean", *range(cap.heads)], key="attn_head")
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
    fusion = permalink.linked(c1.radio, "Head fusion", HEAD_FUSIONS, horizontal=True, key="attn_fusion",
                              help="How each layer's heads are combined before rolling out.")  # fmt: skip
    discard = permalink.linked(c2.slider, "Discard ratio", 0.0, 0.99, 0.9, 0.01, key="attn_discard",
                               help="The lowest share of each layer's weights set to 0 (never the class token's): "
                               "it removes faint, noisy attention. 0 is the plain rollout of Abnar & Zuidema.")
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
            permalink.note(f"The link's patch {quoted(linked)} is not a row and a column of this model's "
                           f"{rows}×{cols} grid (e.g. 3,5); showing the centre.")  # fmt: skip
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


@guarded("reading the clicked patch")
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
    layer = permalink.linked(c1.selectbox, "Layer ", range(cap.layers), key="attn_matrix_layer")
    head = permalink.linked(c2.selectbox, "Head ", range(cap.heads), key="attn_matrix_head")
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
        stats = head_stats(cap)
        return json.dumps({"model": model.name, "image": image.name, "max_entropy": stats.max_entropy,
                           "uniform_distance_px": stats.uniform_distance_px, "heads": stats.rows()}, indent=2)  # fmt: skip

    c1, c2, c3 = st.columns(3)
    c1.download_button("Maps as PNG", maps_png, f"{stem}_attention.png", "image/png",
                       key="attn_dl_png", on_click="ignore")  # fmt: skip
    c2.download_button("Captured attention (.npz)", npz, f"{stem}_attention.npz", "application/octet-stream",
                       key="attn_dl_npz", on_click="ignore",
                       help="attn (layers, heads, tokens, tokens), grads for the class, maps.")  # fmt: skip
    c3.download_button("Head statistics (JSON)", stats_json, f"{stem}_heads.json", "application/json",
                       key="attn_dl_json", on_click="ignore")  # fmt: skip
