"""Widgets and views of the Features page: filters, feature maps, activation maximisation and the spectrum.

The unit (layer, channel, objective) is chosen once and feeds both lower views. Optimised images are kept in the
result cache by model, objective and settings, so a rerun, another visitor or the CLI with the same settings sees
them at once; a run in progress keeps its latest image in the session, so Stop (or any click, which makes
Streamlit rerun the page) leaves the last image on screen.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from plotly.subplots import make_subplots

from dashboard import charts, permalink, resources, state
from dashboard.feedback import attempt, guarded, quoted
from dashboard.views import zipped
from interp.attribution.display import DisplaySettings, overlay
from interp.features import (
    KINDS,
    PARAMETERISATIONS,
    FeatureMaps,
    Objective,
    Step,
    Visualisation,
    VisualiseSettings,
    default_feature_layer,
    feature_layers,
    feature_maps,
    first_filters,
    mosaic,
    visualise,
)
from interp.features.optimise import _key as visualisation_key
from interp.images import LoadedImage
from interp.models import LoadedModel

PARAM_NAMES = {"fft": "Fourier (FFT), decorrelated colour", "pixel": "Pixels"}
SIZES = (64, 96, 128, 160, 224, 256)
PARTIAL = "_features_partial"
LINKED_UNIT = "_features_linked_unit"  # the unit a link gave, until the layer's channels are known
MAP_VIEWS = ("over the image", "alone")
MAP_TILE_PX = 128  # the image under each small map: enough to see where, light enough for 32 maps in one chart
MAP_OVERLAY = DisplaySettings(alpha=0.6, colormap="viridis", sign="positive", clip_percentile=100.0)


# ---------------------------------------------------------------------------------------------- filters and maps


@st.cache_data(max_entries=8, show_spinner=False)
def _filters_png(model_key: str, _model: LoadedModel) -> tuple[bytes, str, int]:
    f = first_filters(_model)
    k, side = len(f.tiles), f.tiles.shape[1]
    picture = mosaic(f.tiles, columns=min(16, k), gap=2, scale=max(1, 48 // side))
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(picture).save(buf, "PNG")
    return buf.getvalue(), f.layer, k


def filters_view(model: LoadedModel) -> None:
    done = attempt(lambda: _filters_png(model.key, model), "reading the first filters")
    if done is None:
        return
    png, layer, k = done
    st.image(png, caption=f"The {k} filters of {layer}, the first convolution: each scaled on its own, grey is 0, "
             "brighter is a positive weight on that colour.")  # fmt: skip


def layer_ui(model: LoadedModel) -> str:
    layers = feature_layers(model)
    default = default_feature_layer(model)
    if default not in layers:
        layers = [default, *layers]
    key = f"feat_layer_{model.key}"
    state.restore(key, default)
    from_url = permalink.take_one("layer")
    if from_url in layers:
        state.put(key, from_url)
    elif from_url:
        permalink.note(f"The link's layer {quoted(from_url)} is not a layer of {model.name} offered here; showing "
                       f"{default}.")  # fmt: skip
    if st.session_state[key] not in layers:
        state.put(key, default)
    return st.selectbox("Layer", layers, key=key, on_change=state.keep, args=(key,),
                        format_func=resources.layer_label(model),
                        help="A block of the network, with its output for one image (channels × height × width; a "
                        "ViT block's tokens × width); the default is about halfway through, where units respond to "
                        "textures and parts. A ViT's blocks are shown as their patch tokens on the image's grid.")  # fmt: skip


@st.cache_data(max_entries=16, show_spinner=False)
def _maps(model_key: str, digest: str, layer: str, top_k: int, _model: LoadedModel, _image: LoadedImage) -> FeatureMaps:
    return feature_maps(_model, _image, layer, top_k)


def channel_key(model: LoadedModel, layer: str) -> str:
    return f"feat_channel_{model.key}_{layer}"


def maps_view(model: LoadedModel, image: LoadedImage, layer: str) -> FeatureMaps | None:
    """The image's strongest channels at ``layer``, over the image or alone; clicking a channel's number carries it
    below."""
    c1, c2 = st.columns([3, 2])
    top_k = c1.slider("Channels shown (strongest mean activation first)", 4, 32, 12, step=4, key="feat_top_k")
    view = permalink.linked(c2.radio, "Show each map", MAP_VIEWS, horizontal=True, key="feat_maps_view",
                            help="Over the image: where in the picture the channel fires (its positive part, each "
                            "map scaled to its own maximum). Alone: the raw grid with its negative values, coloured "
                            "on its own range.")
    fm = attempt(lambda: _maps(model.key, image.digest, layer, top_k, model, image), f"reading {layer}")
    if fm is None:
        return None
    grid = "patch tokens on the image's grid" if fm.tokens else f"a {fm.maps.shape[1]}×{fm.maps.shape[2]} grid"
    shown = "over the image the model sees" if view == MAP_VIEWS[0] else "coloured on its own range"
    st.caption(f"{layer} has {fm.total} channels; each map is {grid}, {shown}. Hover for values; the title gives the "
               "channel and its mean activation.")  # fmt: skip
    base = resources.model_view(model.key, image.digest, model, image) if view == MAP_VIEWS[0] else None
    st.plotly_chart(_maps_figure(fm, base), key=f"feat_maps_{layer}", config={"displayModeBar": False})
    key = channel_key(model, layer)
    if key not in st.session_state:
        st.session_state[key] = int(fm.channels[0])
    st.pills("Carry a channel to the views below", [int(c) for c in fm.channels], key=f"{key}_pill",
             format_func=lambda c: f"#{c}", on_change=_pill_to_channel, args=(key,))  # fmt: skip
    return fm


@guarded("picking the channel")
def _pill_to_channel(key: str) -> None:
    value = st.session_state.get(f"{key}_pill")
    if value is not None:
        st.session_state[key] = int(value)


def _maps_figure(fm: FeatureMaps, base: np.ndarray | None = None, columns: int = 6) -> go.Figure:
    """Small multiples of the channels: heatmaps, or with ``base`` (the model's view of the image) each map's positive
    part laid over it, with the values on hover either way."""
    k = len(fm.channels)
    rows = -(-k // columns)
    height = 150 * rows + 40
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[f"#{c} · {m:.2f}" for c, m in zip(fm.channels, fm.means)],
                        horizontal_spacing=0.01, vertical_spacing=charts.row_gap(height, 30, rows))  # fmt: skip
    if base is not None:
        side = MAP_TILE_PX / max(base.shape[:2])
        small = np.asarray(Image.fromarray(base).resize((round(base.shape[1] * side), round(base.shape[0] * side)),
                                                        Image.Resampling.BILINEAR))  # fmt: skip
        h, w = small.shape[:2]
    grid_h, grid_w = fm.maps.shape[1:]
    cells = np.stack(np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij"), axis=-1)  # (row, column)
    for i, (c, m) in enumerate(zip(fm.channels, fm.maps)):
        where = dict(row=i // columns + 1, col=i % columns + 1)
        hover = f"channel {c}<br>row %{{customdata[0]}}, column %{{customdata[1]}}<br>value %{{z:.3f}}<extra></extra>"
        if base is None:
            fig.add_trace(go.Heatmap(z=m[::-1], customdata=cells[::-1], colorscale="Viridis", showscale=False,
                                     hovertemplate=hover), **where)  # fmt: skip
            continue
        tinted = overlay(small, np.clip(m, 0, None)[None].astype(np.float32), MAP_OVERLAY)
        fig.add_trace(go.Image(source=charts.jpeg_data_uri(tinted), hoverinfo="skip"), **where)
        fig.add_trace(go.Heatmap(z=m, x=(np.arange(m.shape[1]) + 0.5) * w / m.shape[1],
                                 y=(np.arange(m.shape[0]) + 0.5) * h / m.shape[0], customdata=cells, opacity=0,
                                 showscale=False, hovertemplate=hover), **where)  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0))
    fig.update_annotations(font_size=11)
    return fig


# --------------------------------------------------------------------------------------------------------- unit


def objective_ui(model: LoadedModel, layer: str, predicted: int, fm: FeatureMaps | None) -> Objective | None:
    """What to drive: a channel or neuron of the layer above, or a class; and which way. Mirrored in the link
    (``objective``, ``unit``, ``negative``; ``layer`` by :func:`layer_ui`)."""
    _take_link(model, layer)
    objective = _objective_widgets(model, layer, predicted, fm)
    permalink.publish(layer=layer if objective.on_layer else None, objective=objective.kind,
                      unit=str(objective.unit), negative="1" if objective.negative else None)  # fmt: skip
    return objective


def _take_link(model: LoadedModel, layer: str) -> None:
    kind, unit, negative = permalink.take_one("objective"), permalink.take_one("unit"), permalink.take_one("negative")
    if kind is not None:
        if kind in KINDS:
            st.session_state["feat_kind"] = kind
        else:
            permalink.note(f"The link's objective {quoted(kind)} is not one of {', '.join(KINDS)}.")
    if unit is not None:
        on_layer = st.session_state.get("feat_kind", "channel") in ("channel", "neuron")
        if unit.isdigit():
            st.session_state[channel_key(model, layer) if on_layer else f"feat_class_{model.key}"] = int(unit)
            st.session_state[LINKED_UNIT] = int(unit)  # checked against the layer's channels once they are known
        else:
            permalink.note(f"The link's unit {quoted(unit)} is not a channel or class number (0, 1, 2…); showing "
                           "the page's own.")  # fmt: skip
    if negative is not None:
        if negative not in ("0", "1"):
            permalink.note(f"The link's negative {quoted(negative)} is not 1 or 0; showing the unit's positive side.")
        st.session_state["feat_negative"] = negative == "1"


def _linked_unit_beyond(count: int, what: str, shown: str) -> None:
    """Say once when the link's unit is not below ``count`` (a channel the layer does not have, a class the model
    does not know): the widget then shows ``shown`` instead."""
    linked = st.session_state.pop(LINKED_UNIT, None)
    if linked is not None and linked >= count:
        permalink.note(f"The link's unit {linked} is not {what}; showing {shown}.")


def _objective_widgets(model: LoadedModel, layer: str, predicted: int, fm: FeatureMaps | None) -> Objective:
    c1, c2, c3 = st.columns([2, 2, 1])
    kind = c1.radio("Objective", list(KINDS), format_func=lambda k: KINDS[k], key="feat_kind",
                    horizontal=False)  # fmt: skip
    negative = c3.toggle("Negative", key="feat_negative", help="Minimise instead: the pattern the unit is most against.")
    if kind in ("class", "probability"):
        class_key = f"feat_class_{model.key}"
        _linked_unit_beyond(model.num_classes, f"a class of {model.name} (0 to {model.num_classes - 1})",
                            "the predicted class")  # fmt: skip
        if not 0 <= st.session_state.get(class_key, predicted) < model.num_classes or class_key not in st.session_state:
            st.session_state[class_key] = predicted
        unit = c2.selectbox("Class", range(model.num_classes), key=class_key,
                            format_func=lambda i: f"{charts.short_label(model.class_names[i])} [{i}]")  # fmt: skip
        return Objective(kind, int(unit), negative=negative)
    total = fm.total if fm is not None else 4096
    key = channel_key(model, layer)
    if fm is not None:
        _linked_unit_beyond(total, f"a channel of {layer} (0 to {total - 1})", f"channel {total - 1}")
    st.session_state[key] = min(int(st.session_state.get(key, 0)), total - 1)
    unit = c2.number_input(f"Channel of {layer} (0 to {total - 1})", 0, total - 1, key=key)
    position = None
    if kind == "neuron" and fm is not None:
        h, w = fm.maps.shape[1:]
        # a slider needs two values: a grid one position tall or wide has nothing to choose along it
        row = c2.slider("Row on the grid", 0, h - 1, h // 2, key=f"feat_row_{model.key}_{layer}") if h > 1 else 0
        col = c2.slider("Column on the grid", 0, w - 1, w // 2, key=f"feat_col_{model.key}_{layer}") if w > 1 else 0
        if h == w == 1:
            c2.caption(f"{layer} has one position (a 1×1 grid): a neuron there is the whole channel.")
        position = (int(row), int(col))
    return Objective(kind, int(unit), layer, position, negative)


# ---------------------------------------------------------------------------------------- activation maximisation


@dataclass(frozen=True)
class Plan:
    params: tuple[str, ...]
    settings: VisualiseSettings


def settings_ui() -> Plan:
    d = VisualiseSettings()
    c1, c2, c3 = st.columns([2, 1, 1])
    params = c1.multiselect("Parameterisations, side by side", PARAMETERISATIONS, default=list(PARAMETERISATIONS),
                            format_func=PARAM_NAMES.get, key="feat_params",
                            placeholder="Pick one or both")  # fmt: skip
    steps = c2.slider("Steps", 16, 1024, d.steps, step=16, key="feat_steps")
    size = c3.select_slider("Image size (px)", SIZES, value=d.size, key="feat_size")
    with st.expander("Regularisers, batch and diversity"):
        r1, r2, r3 = st.columns(3)
        jitter = r1.slider("Jitter (px)", 0, 16, d.jitter, key="feat_jitter", help="Largest random shift per step.")
        scale = r2.slider("Scale (±)", 0.0, 0.3, d.scale, 0.05, key="feat_scale", help="Largest random zoom per step.")
        rotate = r3.slider("Rotate (± degrees)", 0, 30, int(d.rotate), key="feat_rotate")
        tv = r1.number_input("Total variation weight", 0.0, 100.0, d.tv, 0.5, key="feat_tv",
                             help="Penalises neighbouring pixels that differ: smoother images.")  # fmt: skip
        l2 = r2.number_input("L2 weight", 0.0, 100.0, d.l2, 0.5, key="feat_l2", help="Penalises colours far from grey.")
        lr = r3.select_slider("Step size (Adam)", (0.01, 0.02, 0.05, 0.1, 0.2), value=d.lr, key="feat_lr")
        batch = r1.slider("Images of the same unit", 1, 8, d.batch, key="feat_batch")
        div = r2.number_input("Diversity weight", 0.0, 10.0, d.diversity, 0.1, key="feat_diversity",
                              help="With several images: pushes their styles apart (Olah et al. 2017).")  # fmt: skip
        seed = r3.number_input("Seed", 0, 1_000_000, d.seed, key="feat_seed")
        decorrelate = r1.toggle("Decorrelated colour", d.decorrelate, key="feat_decorrelate")
    settings = VisualiseSettings(steps=steps, size=size, batch=batch, lr=lr, jitter=min(jitter, size // 4),
                                 scale=scale, rotate=float(rotate), tv=tv, l2=l2, diversity=div,
                                 decorrelate=decorrelate, seed=int(seed))  # fmt: skip
    return Plan(tuple(params), settings)


def cached_visualisation(model: LoadedModel, objective: Objective, settings: VisualiseSettings) -> Visualisation | None:
    cache = resources.result_cache()
    if visualisation_key(model, objective, settings) not in cache:
        return None
    return attempt(lambda: visualise(model, objective, settings, cache=cache), "reading a kept visualisation")


def optimise_ui(model: LoadedModel, objective: Objective, plan: Plan) -> dict[str, Visualisation]:
    """The Run button, the live view while it runs, and what is done: ``{param: result}`` for the chosen
    parameterisations that are finished (cached)."""
    if not plan.params:
        st.info("Pick at least one parameterisation.")
        return {}
    runs = {p: VisualiseSettings(**{**plan.settings.as_dict(), "param": p}) for p in plan.params}
    done = {p: v for p, s in runs.items() if (v := cached_visualisation(model, objective, s)) is not None}
    todo = [p for p in plan.params if p not in done]
    buttons = st.container(horizontal=True)  # side by side, whatever the page's width
    go_ = buttons.button("Visualise", type="primary", key="feat_run", disabled=not todo,
                         help="Already computed with these settings." if not todo else None)  # fmt: skip
    buttons.button("Stop", key="feat_stop", disabled=not todo,  # all finished: nothing can be running
                   help="Stops at the current step and keeps its image.")  # fmt: skip
    columns = dict(zip(plan.params, st.columns(len(plan.params))))
    if go_:
        st.session_state.pop(PARTIAL, None)
        for p in todo:
            result = _run_live(model, objective, runs[p], columns[p])
            if result is None:
                break
            done[p] = result
    partial = st.session_state.get(PARTIAL)
    for p in plan.params:
        with columns[p]:
            if p in done:
                _result_view(done[p], f"feat_curve_{p}")
            elif partial is not None and partial["key"] == visualisation_key(model, objective, runs[p]):
                st.markdown(f"**{PARAM_NAMES[p]}**")
                st.image(list(partial["images"]), width=min(256, runs[p].size * 2))
                st.caption(f"Stopped at step {partial['step']} of {runs[p].steps}; this is the last image. "
                           "Press Visualise to start again.")  # fmt: skip
                st.plotly_chart(_curve_figure(partial["curve"]), key=f"feat_partial_curve_{p}",
                                config={"displayModeBar": False})  # fmt: skip
            else:
                st.markdown(f"**{PARAM_NAMES[p]}**")
                st.caption(f"Not computed yet: {runs[p].steps} steps at {runs[p].size} px. Press Visualise.")
    if done:
        _downloads(model, objective, done)
    return done


def _run_live(model: LoadedModel, objective: Objective, settings: VisualiseSettings, column) -> Visualisation | None:
    key = visualisation_key(model, objective, settings)
    slot = column.empty()  # the live view, gone when the run ends (the result is drawn in its place)
    with slot.container():
        st.markdown(f"**{PARAM_NAMES[settings.param]}**")
        picture, bar, chart = st.empty(), st.progress(0.0, text="Starting…"), st.empty()
    curve: list[float] = []

    def on_step(step: Step) -> None:
        curve.append(step.value)
        if step.images is None:
            return
        st.session_state[PARTIAL] = {"key": key, "images": step.images, "curve": list(curve), "step": step.step}
        picture.image(list(step.images), width=min(256, settings.size * 2))
        left = f" · about {step.seconds_left:.0f} s left" if step.seconds_left is not None else ""
        bar.progress(step.step / step.total, text=f"Step {step.step} of {step.total}{left}")
        # a key per run and step: two runs of a unit that stays at 0 draw the same figure at the same step
        chart.plotly_chart(_curve_figure(curve), key=f"feat_live_curve_{settings.param}_{step.step}",
                           config={"displayModeBar": False})  # fmt: skip

    def on_wait() -> None:
        bar.progress(0.0, text="Another visitor is drawing this same image; it shows here when they finish…")

    result = attempt(lambda: visualise(model, objective, settings, cache=resources.result_cache(), on_step=on_step,
                                       on_wait=on_wait), "optimising the image")  # fmt: skip
    slot.empty()
    if result is not None:
        st.session_state.pop(PARTIAL, None)
    return result


def _curve_figure(curve, height: int = 180) -> go.Figure:
    fig = go.Figure(go.Scatter(y=list(curve), x=list(range(1, len(curve) + 1)), mode="lines",
                               hovertemplate="step %{x}<br>objective %{y:.3f}<extra></extra>"))  # fmt: skip
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=24, b=0), title=dict(text="Objective per step", font_size=12),
                      xaxis_title=None, yaxis_title=None)  # fmt: skip
    return fig


def _result_view(v: Visualisation, key: str) -> None:
    st.markdown(f"**{PARAM_NAMES[v.settings.param]}**")
    st.image(list(v.images), width=min(256, v.settings.size * 2),
             caption=[f"value {x:.3f}" for x in v.values])  # fmt: skip
    st.caption(f"{v.steps_done} steps in {v.seconds:.1f} s; the objective on the final image, untransformed: "
               f"{', '.join(f'{x:.3f}' for x in v.values)}.")  # fmt: skip
    st.plotly_chart(_curve_figure(v.curve), key=key, config={"displayModeBar": False})
    if v.flat:
        st.warning(v.flat_note(), icon=":material/block:")


def download_files(model: LoadedModel, objective: Objective, done: dict[str, Visualisation]) -> tuple[bytes, str]:
    """A zip of every image as PNG with ``settings.json``, and that JSON alone: the model, the objective, and per
    parameterisation its settings, curve and final values."""
    from PIL import Image

    summary = {"model": model.name, "weights": model.weights.source, "objective": objective.as_dict(),
               "runs": {p: {k: v for k, v in r.summary().items() if k != "objective"} for p, r in done.items()}}  # fmt: skip
    text = json.dumps(summary, indent=2)
    files = {}
    for p, r in done.items():
        for i, image in enumerate(r.images):
            png = io.BytesIO()
            Image.fromarray(image).save(png, "PNG")
            files[f"{p}_{i}.png"] = png.getvalue()
    return zipped({**files, "settings.json": text.encode()}), text


def _downloads(model: LoadedModel, objective: Objective, done: dict[str, Visualisation]) -> None:
    zipped, text = download_files(model, objective, done)
    stem = f"{model.name}_{objective.describe().replace(' ', '_')}"
    c1, c2 = st.columns(2)
    c1.download_button("Download the images (PNG, zip)", zipped, f"{stem}.zip", "application/zip",
                       key="feat_dl_zip", on_click="ignore")  # fmt: skip
    c2.download_button("Download the settings (JSON)", text, f"{stem}.json", "application/json",
                       key="feat_dl_json", on_click="ignore")  # fmt: skip
