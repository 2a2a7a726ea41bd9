"""Widgets and views of the Attribution page. Results come from the engine through the disk cache, so display
controls and revisited combinations never recompute."""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from dashboard import charts, resources, state
from dashboard.feedback import attempt, sentence
from interp.attribution import METHODS, Attribution, attribute
from interp.attribution.baselines import BASELINES
from interp.attribution.display import AGGREGATIONS, COLORMAPS, SIGNS, DisplaySettings, grid_png, overlay
from interp.errors import InterpError
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.predict import Prediction

log = logging.getLogger(__name__)

DEFAULT_METHODS = ["grad_cam", "saliency", "integrated_gradients"]
UNTRAINED = "Untrained copy (sanity check)"
TRUST_DELTA = 0.05  # relative completeness error above which IG's map is flagged


@dataclass(frozen=True)
class AttributionChoice:
    methods: tuple[str, ...]
    targets: tuple[int, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def params_for(self, method: str) -> dict[str, Any]:
        """The shared settings that this method has (e.g. ``steps`` for IG, ``layer`` for CAMs)."""
        return {k: v for k, v in self.settings.items() if k in METHODS[method].defaults}


@dataclass
class Cell:
    """One grid cell: a result, or the sentence saying why there is none."""

    result: Attribution | None = None
    message: str = ""


def method_picker_ui(model: LoadedModel) -> list[str]:
    state.restore("attr_methods", DEFAULT_METHODS)

    def label(name: str) -> str:
        reason = METHODS[name]().applies_to(model)
        return METHODS[name].title + (" (not for this model)" if reason else "")

    chosen = st.multiselect(
        "Methods",
        list(METHODS),
        key="attr_methods",
        format_func=label,
        on_change=state.keep,
        args=("attr_methods",),
        help="Each column of the grid is one method. Their one-line explanations are under 'About the methods'.",
    )
    with st.expander("About the methods"):
        for name, cls in METHODS.items():
            reason = cls().applies_to(model)
            note = f" *Not for {model.name}: {reason}*" if reason else ""
            st.markdown(f"**{cls.title}** ({cls.kind}): {cls.summary} — {cls.paper}.{note}")
    return chosen


def target_picker_ui(model: LoadedModel, prediction: Prediction) -> list[int]:
    top = [s.index for s in prediction.scores]
    probs = {s.index: s.prob for s in prediction.scores}
    options = top + [i for i in range(model.num_classes) if i not in probs]

    def label(i: int) -> str:
        name = charts.short_label(model.class_names[i])
        return f"{name} ({probs[i]:.1%})" if i in probs else f"{name} [{i}]"

    key = f"attr_targets_{model.key}_{prediction.top.index}"  # a new model or image starts from its prediction
    return st.multiselect(
        "Target classes",
        options,
        default=[top[0]],
        key=key,
        format_func=label,
        help="One row per class. The top-5 come first; type to find any other class by name.",
    )


def second_model_ui(model: LoadedModel) -> LoadedModel | None:
    """Optionally a second model on the same image: another available model, or an untrained copy of this one."""
    if not st.toggle("Compare with a second model", key="attr_compare"):
        return None
    others = [r["name"] for r in resources.model_rows() if r["available"] and r["name"] != model.name]
    pick = st.selectbox(
        "Second model",
        [UNTRAINED, *others],
        key="attr_second",
        help="An untrained copy of the same architecture is the sanity check of Adebayo et al. (2018): a method "
        "whose map looks the same on it is showing the image's edges, not what the model learned.",
    )
    if pick == UNTRAINED:
        second = attempt(lambda: resources.untrained(model.spec.name), f"building an untrained {model.spec.name}")
    else:
        second = attempt(lambda: resources.model(pick, None, None, None, None), f"loading {pick}")
    if second is not None and second.num_classes != model.num_classes:
        st.info(f"{second.name} has {second.num_classes} classes and {model.name} {model.num_classes}; "
                "the same target classes cannot be compared.")  # fmt: skip
        return None
    return second


def settings_ui(model: LoadedModel, methods: list[str]) -> dict[str, Any]:
    """Settings of the chosen methods; only the relevant controls are drawn."""
    wanted = set().union(*(METHODS[m].defaults for m in methods)) if methods else set()
    out: dict[str, Any] = {}
    if not wanted:
        return out
    with st.expander("Method settings"):
        cols = st.columns(3)
        with cols[0]:
            if "steps" in wanted:
                out["steps"] = st.slider("Integrated Gradients steps", 8, 256, 32, step=8, key="attr_steps")
            if "baseline" in wanted:
                out["baseline"] = st.selectbox(
                    "Baseline", BASELINES, index=BASELINES.index(METHODS["integrated_gradients"].defaults["baseline"]),
                    key="attr_baseline", help="The reference image for IG, DeepLIFT, occlusion and LIME/SHAP; the "
                    "image's mean colour by default (from black, IG needs far more steps to add up).")
            if "layer" in wanted:
                modules = list(model.layer_names())
                default = modules.index(model.spec.cam_layer) if model.spec.cam_layer in modules else 0
                out["layer"] = st.selectbox("Layer for CAM methods", modules, index=default, key=f"attr_layer_{model.key}")
        with cols[1]:
            if "samples" in wanted:
                out["samples"] = st.slider("Samples (SmoothGrad, VarGrad, GradientSHAP, LIME, KernelSHAP)", 4, 400, 16,
                                           key="attr_samples")  # fmt: skip
            if "noise" in wanted:
                out["noise"] = st.slider("Noise level (fraction of the input range)", 0.0, 0.5, 0.15, 0.01, key="attr_noise")
            if "base" in wanted:
                gradient = [n for n, c in METHODS.items() if c.kind == "gradient" and "base" not in c.defaults]
                out["base"] = st.selectbox("SmoothGrad / VarGrad wraps", gradient, key="attr_base",
                                           format_func=lambda n: METHODS[n].title)  # fmt: skip
        with cols[2]:
            if "window" in wanted:
                out["window"] = st.slider("Occlusion window (px)", 8, 112, 32, step=4, key="attr_window")
                out["stride"] = st.slider("Occlusion stride (px)", 4, 112, 16, step=4, key="attr_stride")
            if "superpixels" in wanted:
                out["superpixels"] = st.slider("Superpixels (LIME, KernelSHAP)", 10, 200, 50, step=5, key="attr_superpixels")
            if "channels" in wanted:
                out["channels"] = st.slider("Score-CAM channels scored", 8, 512, METHODS["score_cam"].defaults["channels"],
                                            step=8, key="attr_channels", help=METHODS["score_cam"].CHANNELS_HELP)
    return out


def display_ui() -> DisplaySettings:
    """Controls that only change how stored maps are drawn."""
    cols = st.columns(5)
    alpha = cols[0].slider("Overlay", 0.0, 1.0, 0.5, 0.05, key="attr_alpha")
    colormap = cols[1].selectbox("Colours", [c for c in COLORMAPS if c != "diverging"], key="attr_cmap")
    sign = cols[2].selectbox("Sign", SIGNS, key="attr_sign", help="'signed' shows positive red, negative blue.")
    clip = cols[3].slider("Clip at percentile", 90.0, 100.0, 99.0, 0.5, key="attr_clip")
    agg = cols[4].selectbox("Channels", AGGREGATIONS, key="attr_agg", help="How the 3 colour channels become one value.")
    return DisplaySettings(alpha=alpha, colormap=colormap, sign=sign, clip_percentile=clip, aggregation=agg)


def compute(model: LoadedModel, image: LoadedImage, choice: AttributionChoice) -> dict[tuple[int, str], Cell]:
    """Every (target, method) cell, through the disk cache; progress with an ETA while anything is computed."""
    cache = resources.result_cache()
    jobs = [(t, m) for t in choice.targets for m in choice.methods]
    cells: dict[tuple[int, str], Cell] = {}
    bar = None
    started, computed = time.perf_counter(), 0
    for done, (target, method) in enumerate(jobs):
        reason = METHODS[method](**choice.params_for(method)).applies_to(model)
        if reason:
            cells[(target, method)] = Cell(message=f"Not for {model.name}: {reason}")
            continue
        if bar is None and len(jobs) > 1:
            bar = st.progress(0.0, text="Computing attributions…")
        if bar is not None:
            eta = ""
            if computed:
                per = (time.perf_counter() - started) / computed
                eta = f" · about {per * (len(jobs) - done):.0f} s left"
            name = charts.md(charts.short_label(model.class_names[target]))
            bar.progress(done / len(jobs), text=f"{METHODS[method].title} for {name} ({done + 1}/{len(jobs)}){eta}")
        try:
            result = attribute(model, image, method, target, cache=cache, **choice.params_for(method))
            cells[(target, method)] = Cell(result)
            computed += 0 if result.extras.get("cached") else 1
        except (InterpError, ValueError) as exc:
            cells[(target, method)] = Cell(message=sentence(str(exc)))
        except Exception:
            log.exception("attribution %s for target %s failed", method, target)
            cells[(target, method)] = Cell(message="This method failed on this model; the details are in the server log.")
    if bar is not None:
        bar.empty()
    return cells


def ground_truth(model: LoadedModel) -> np.ndarray | None:
    """The object mask in the model's view when the sidebar image comes from the shapes world (else ``None``)."""
    chosen = st.session_state.get("_image", {})
    source = chosen.get("source")
    if chosen.get("kind") != "dataset" or not source or source[2] != "shapes":
        return None
    return attempt(lambda: resources.shapes_truth(source[1], chosen["name"], model.key, model), "reading the ground truth")


def grid_view(
    model: LoadedModel, image: LoadedImage, choice: AttributionChoice, cells: dict, display: DisplaySettings,
    key: str = "main", truth: np.ndarray | None = None,
) -> list[list[np.ndarray | None]]:  # fmt: skip
    """Draw the grid; return the overlays (rows × columns) for the PNG download. With ``truth`` (an object mask in
    the model's view) each map shows the object's outline and whether its peak falls on it (the pointing game)."""
    base = resources.model_view(model.key, image.digest, model, image)
    overlays: list[list[np.ndarray | None]] = []
    hits: list[bool] = []
    for target in choice.targets:
        st.markdown(f"**{charts.md(charts.short_label(model.class_names[target]))}** · class {target}")
        row: list[np.ndarray | None] = []
        for col, method in zip(st.columns(len(choice.methods)), choice.methods):
            cell = cells[(target, method)]
            with col:
                st.caption(METHODS[method].title)
                if cell.result is None:
                    st.info(cell.message)
                    row.append(None)
                    continue
                identity = json.dumps([model.key, image.digest, method, target, cell.result.params], default=str)
                shown, jpeg = _rendered(identity, display, base, cell.result.raw)
                caption = _cell_caption(cell.result)
                if truth is not None:
                    from interp.shapes import draw_outline, pointing_hit

                    hit = pointing_hit(np.abs(cell.result.raw).max(axis=0), truth)  # largest |value| of any colour
                    hits.append(hit)
                    shown = draw_outline(shown, truth)
                    jpeg = shown
                    caption += " · peak on the object ✓" if hit else " · peak off the object ✗"
                row.append(shown)
                st.image(jpeg, width="stretch")
                st.caption(caption)
        overlays.append(row)
    if truth is not None and hits:
        st.caption(
            f"Ground truth (white outline): {sum(hits)} of {len(hits)} maps have their maximum on the object (the "
            "pointing game, Zhang et al. 2016; a pixel's value is its largest absolute value over the colour "
            "channels). In this world the right answer is known; a map peaking elsewhere, e.g. on the corner "
            "marker, shows what the model really used."
        )
    return overlays


@st.cache_data(max_entries=512, show_spinner=False)
def _rendered(identity: str, display: DisplaySettings, _base: np.ndarray, _raw: np.ndarray) -> tuple[np.ndarray, bytes]:
    """Overlay of one cell and its JPEG; ``identity`` names the result, so a rerun with the same display is free."""
    shown = overlay(_base, _raw, display)
    buf = io.BytesIO()
    Image.fromarray(shown).save(buf, "JPEG", quality=90)
    return shown, buf.getvalue()


def inspect_ui(model: LoadedModel, image: LoadedImage, choice: AttributionChoice, cells: dict,
               display: DisplaySettings) -> None:  # fmt: skip
    """One cell enlarged as an interactive chart: hover shows the map's value under the pointer."""
    ready = [(t, m) for t in choice.targets for m in choice.methods if cells[(t, m)].result is not None]
    if not ready:
        return
    with st.expander("Inspect values (hover over the map)"):
        target, method = st.selectbox(
            "Cell",
            ready,
            format_func=lambda tm: f"{METHODS[tm[1]].title} · {charts.short_label(model.class_names[tm[0]])}",
            key="attr_inspect",
        )
        result = cells[(target, method)].result
        shown = overlay(resources.model_view(model.key, image.digest, model, image), result.raw, display)
        st.plotly_chart(charts.attribution_figure(shown, result.raw, display, height=520), key="attr_inspect_chart",
                        config={"displayModeBar": False})  # fmt: skip


def _cell_caption(result: Attribution) -> str:
    timing = f"{result.seconds:.2f} s" + (", cached" if result.extras.get("cached") else "")
    text = f"{timing}"
    if result.delta is not None and "relative_delta" in result.extras:
        rel = result.extras["relative_delta"]
        text += f" · completeness error {result.delta:+.3f} ({rel:.1%} of the {result.extras['logit_gap']:.2f} logit change)"
        if rel > TRUST_DELTA:
            text += " ⚠ above 5%: raise the steps before trusting this map"
    return text


def downloads_ui(
    model: LoadedModel, image: LoadedImage, choice: AttributionChoice, cells: dict, display: DisplaySettings,
    overlays: list[list[np.ndarray | None]],
) -> None:  # fmt: skip
    """Download buttons whose files are built only when clicked (building them on every rerun costs ~0.2 s)."""
    rows = [charts.short_label(model.class_names[t]) for t in choice.targets]
    cols = [METHODS[m].title for m in choice.methods]

    view = resources.model_view(model.key, image.digest, model, image)

    def npz() -> bytes:
        raw = {f"{m}__{t}": c.result.raw for (t, m), c in cells.items() if c.result is not None}
        buf = io.BytesIO()
        np.savez_compressed(buf, **raw, input=view)
        return buf.getvalue()

    def settings() -> str:
        first = {m: cells[(choice.targets[0], m)].result for m in choice.methods}
        return json.dumps(
            {
                "model": model.name,
                "weights": model.weights.source,
                "weights_fingerprint": model.weights.fingerprint,
                "image": image.name,
                "image_digest": image.digest,
                "targets": {str(t): model.class_names[t] for t in choice.targets},
                "methods": {m: (r.params if r else None) for m, r in first.items()},
                "display": asdict(display),
            },
            indent=2,
        )

    stem = f"{model.name}_{image.name.rsplit('.', 1)[0]}"
    c1, c2, c3 = st.columns(3)
    c1.download_button("Grid as PNG", lambda: grid_png(rows, cols, overlays), f"{stem}_grid.png", "image/png", key="dl_png")
    c2.download_button("Raw maps (.npz)", npz, f"{stem}_attributions.npz", "application/octet-stream", key="dl_npz")
    c3.download_button("Settings (JSON)", settings, f"{stem}_settings.json", "application/json", key="dl_json")
