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

from dashboard import charts, method_settings_ui, permalink, resources, state, trust_ui
from dashboard.feedback import attempt, sentence
from dashboard.selection import download_notice, loading
from interp.attribution import METHODS, Attribution, attribute, enough_steps
from interp.attribution.base import COMPLETENESS_TOLERANCE as TOLERANCE
from interp.attribution.display import AGGREGATIONS, COLORMAPS, SIGNS, DisplaySettings, grid_png, overlay
from interp.concepts import seconds_left
from interp.errors import InterpError
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.predict import Prediction
from interp.words import counted

log = logging.getLogger(__name__)

DEFAULT_METHODS = ["grad_cam", "saliency", "integrated_gradients"]
UNTRAINED = "untrained"
"""The second model box's choice of an untrained copy of the sidebar's model (in a link: ``second=untrained``)."""
_STEPS_NOTE = "_ig_steps_note"
GRID_COLUMNS = 6
"""Most maps side by side in a class's row; more methods wrap onto further lines of the same width (all 21 in one
line were 40 pixels wide on a laptop, their titles broken a letter or two per line)."""
HALF_GRID_COLUMNS = 3
"""The same for each of two grids side by side (a second model compared)."""


@dataclass(frozen=True)
class AttributionChoice:
    """What the grid shows: methods (columns), target classes (rows) and each method's settings."""

    methods: tuple[str, ...]
    targets: tuple[int, ...]
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def params_for(self, method: str) -> dict[str, Any]:
        return dict(self.settings.get(method, {}))


@dataclass
class Cell:
    """One grid cell: a result, or the sentence saying why there is none."""

    result: Attribution | None = None
    message: str = ""


def method_picker_ui(model: LoadedModel) -> list[str]:
    linked = permalink.split(permalink.take_one("methods"))
    if linked:
        known = [m for m in dict.fromkeys(linked) if m in METHODS]
        if len(known) < len(linked):
            permalink.note(f"The link names methods this app does not have ({', '.join(set(linked) - set(known))}).")
        state.put("attr_methods", known)
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
        placeholder="Pick one or more methods",
        help="Each column of the grid is one method. Their one-line explanations are under 'About the methods'.",
    )
    with st.expander("About the methods"):
        for name, cls in METHODS.items():
            reason = cls().applies_to(model)
            note = f" *Not for {model.name}: {reason}*" if reason else ""
            st.markdown(f"**{cls.title}** ({cls.kind}): {cls.summary} — {cls.paper}.{note}")
    permalink.publish(methods=",".join(chosen) if chosen != DEFAULT_METHODS else None)
    return chosen


def target_picker_ui(model: LoadedModel, prediction: Prediction) -> list[int]:
    top = [s.index for s in prediction.scores]
    probs = {s.index: s.prob for s in prediction.scores}
    options = top + [i for i in range(model.num_classes) if i not in probs]

    def label(i: int) -> str:
        name = charts.short_label(model.class_names[i])
        return f"{name} ({probs[i]:.1%})" if i in probs else f"{name} [{i}]"

    key = f"attr_targets_{model.key}_{prediction.top.index}"  # a new model or image starts from its prediction
    linked = permalink.split(permalink.take_one("targets"))
    if linked:
        valid = [int(t) for t in linked if t.isdigit() and int(t) < model.num_classes]
        if len(valid) < len(linked):
            permalink.note(f"The link's classes {', '.join(linked)} are not all classes of {model.name}; "
                           "the others are shown.")  # fmt: skip
        if valid:
            state.put(key, list(dict.fromkeys(valid)))
    state.restore(key, [top[0]])
    targets = st.multiselect(
        "Target classes",
        options,
        key=key,
        format_func=label,
        on_change=state.keep,
        args=(key,),
        placeholder="Pick one or more classes: type a name or a class index",
        help="One row per class. The most probable come first, with their probabilities; type to find any other "
        "class by its name or index.",
    )
    permalink.publish(targets=",".join(map(str, targets)) if targets != [top[0]] else None)
    return targets


def second_model_ui(model: LoadedModel) -> LoadedModel | None:
    """Optionally a second model on the same image: another available model, or an untrained copy of this one. Both
    boxes are in the link (``compare=true&second=untrained``), so a shared sanity check opens as it was seen."""
    if not permalink.linked(st.toggle, "Compare with a second model", key="compare"):
        return None
    others = [name for name, ok in resources.model_choices().items() if ok and name != model.name]
    pick = permalink.linked(
        st.selectbox,
        "Second model",
        [UNTRAINED, *others],
        key="second",
        format_func=lambda name: "Untrained copy (sanity check)" if name == UNTRAINED else name,
        help="An untrained copy of the same architecture is the sanity check of Adebayo et al. (2018): a method "
        "whose map looks the same on it is showing the image's edges, not what the model learned.",
    )
    if pick == UNTRAINED:
        second = attempt(lambda: resources.untrained(model.spec.name, tuple(model.class_names)),
                         f"building an untrained {model.spec.name}")  # fmt: skip
    else:
        second = loading(pick, lambda: resources.model(pick, None, None, None, None), download_notice(pick))
    if second is not None and second.num_classes != model.num_classes:
        st.info(f"{second.name} has {second.num_classes} classes and {model.name} {model.num_classes}; "
                "the same target classes cannot be compared.")  # fmt: skip
        return None
    return second


DISPLAY = DisplaySettings()
"""The display's defaults; a link carries only what differs from them."""
_DISPLAY_PARAMS = {"alpha": "alpha", "cmap": "colormap", "sign": "sign", "clip": "clip_percentile",
                   "agg": "aggregation"}  # fmt: skip


def display_ui() -> DisplaySettings:
    """Controls that only change how stored maps are drawn."""
    colormaps = [c for c in COLORMAPS if c != "diverging"]
    ranges = {"alpha": (0.0, 1.0), "clip": (90.0, 100.0)}
    choices = {"cmap": colormaps, "sign": SIGNS, "agg": AGGREGATIONS}
    for param, field_name in _DISPLAY_PARAMS.items():
        linked = permalink.take_one(param)
        if linked is None:
            pass
        elif param in ranges and _number_in(linked, *ranges[param]):
            state.put(f"attr_{param}", float(linked))
        elif param in choices and linked in choices[param]:
            state.put(f"attr_{param}", linked)
        else:
            permalink.note(f"The link's display option {param}={linked} is not one this page offers; the default "
                           "is used.")  # fmt: skip
        state.restore(f"attr_{param}", getattr(DISPLAY, field_name))

    def kept(param: str) -> dict:
        return {"key": f"attr_{param}", "on_change": state.keep, "args": (f"attr_{param}",)}

    cols = st.columns([0.8, 1.15, 1.25, 0.8, 1.1])  # the menus wider: their words fit at 820 px, sidebar open
    alpha = cols[0].slider("Overlay", 0.0, 1.0, step=0.05, **kept("alpha"))
    colormap = cols[1].selectbox("Colours", colormaps, **kept("cmap"))
    sign = cols[2].selectbox("Sign", SIGNS, help="'signed' shows positive red, negative blue.", **kept("sign"))
    clip = cols[3].slider("Clip", 90.0, 100.0, step=0.5, help="The percentile of the map's values from which on "
                          "every value takes the strongest colour (lower it to see weaker evidence).", **kept("clip"))
    agg = cols[4].selectbox("Channels", AGGREGATIONS, help="How the 3 colour channels become one value.", **kept("agg"))
    shown = DisplaySettings(alpha=alpha, colormap=colormap, sign=sign, clip_percentile=clip, aggregation=agg)
    permalink.publish(**{
        param: None if getattr(shown, f) == getattr(DISPLAY, f) else permalink.encode_number(getattr(shown, f))
        for param, f in _DISPLAY_PARAMS.items()
    })  # fmt: skip
    return shown


def _number_in(text: str, low: float, high: float) -> bool:
    try:
        return low <= float(text) <= high
    except ValueError:
        return False


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
    """The object in the model's view when the sidebar image comes from a dataset that knows where it is: the shapes
    world's exact mask, or the union of an Open Images image's boxes (else ``None``)."""
    chosen = st.session_state.get("_image", {})
    source = chosen.get("source")
    if chosen.get("kind") != "dataset" or not source:
        return None
    return attempt(lambda: resources.object_truth(source, chosen["name"], model.key, model), "reading the ground truth")


def grid_view(
    model: LoadedModel, image: LoadedImage, choice: AttributionChoice, cells: dict, display: DisplaySettings,
    key: str = "main", truth: np.ndarray | None = None, scores: dict | None = None, per_row: int = GRID_COLUMNS,
) -> list[list[np.ndarray | None]]:  # fmt: skip
    """Draw the grid; return the overlays (rows × columns) for the PNG download. With ``truth`` (an object mask in
    the model's view) each map shows the object's outline and whether its peak falls on it (the pointing game).
    ``key`` names the grid: ``"main"`` (the sidebar's model) also offers *Find enough steps* under an IG map that
    misses its logit change; any other (the compared model's grid beside it) does not, since both grids share the
    steps slider and one button per class may exist on the page. A class's maps take lines of ``per_row``."""
    base = resources.model_view(model.key, image.digest, model, image)
    overlays: list[list[np.ndarray | None]] = []
    hits: list[bool] = []
    if key == "main" and st.session_state.get(_STEPS_NOTE):
        st.info(st.session_state.pop(_STEPS_NOTE))
    for target in choice.targets:
        st.markdown(f"**{charts.md(charts.short_label(model.class_names[target]))}** · class {target}")
        row: list[np.ndarray | None] = []
        # at least two columns: one method alone would fill the page's width, its caption a screen below the top
        width = max(min(len(choice.methods), per_row), 2)
        lines = [choice.methods[start : start + width] for start in range(0, len(choice.methods), width)]
        for col, method in ((c, m) for line in lines for c, m in zip(st.columns(width), line)):
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
                curves = scores["maps"].get((target, method)) if scores else None
                floor = scores["floor"].get(target) if scores else None
                if curves is not None and floor is not None:
                    from interp.evaluation import score_line

                    caption += f" · {score_line(curves, floor)}"
                if truth is not None:
                    from interp.evaluation import energy_inside, pointing
                    from interp.shapes import draw_outline

                    hit = pointing(cell.result.raw, truth)  # colour channels: largest |value|; one channel: as it is
                    hits.append(hit)
                    shown = draw_outline(shown, truth)
                    jpeg = shown
                    caption += " · peak on the object ✓" if hit else " · peak off the object ✗"
                    caption += f" · {energy_inside(cell.result.raw, truth):.0%} of the map on the object"
                row.append(shown)
                st.image(jpeg, width="stretch")
                st.caption(caption)
                if key == "main" and method == "integrated_gradients" and cell.result.incomplete:
                    _enough_steps_ui(model, image, target, choice.params_for(method))
        overlays.append(row)
    if truth is not None and hits:
        st.caption(
            f"Ground truth (white outline: the object, or its boxes): {sum(hits)} of {counted(len(hits), 'map')} "
            f"{'has its' if len(hits) == 1 else 'have their'} maximum on the object (the pointing game, Zhang et al. "
            "2016; a pixel counts with its largest absolute value over the colour channels, or with its sign where a "
            f"map has one value per pixel, as occlusion's and LIME's do); the object covers {truth.mean():.0%} of "
            "the image, the share of a map's mass on it is given "
            "under each map (an evenly spread map would score that). In this world the right answer is known; a map "
            "peaking elsewhere, e.g. on the corner marker, shows what the model really used."
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
               display: DisplaySettings, scores: dict | None = None) -> None:  # fmt: skip
    """One cell enlarged as an interactive chart: hover shows the map's value under the pointer; with trust scores
    on, its deletion and insertion curves beside a random map's."""
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
        curves = scores["maps"].get((target, method)) if scores else None
        floor = scores["floor"].get(target) if scores else None
        if curves is not None and floor is not None:
            st.plotly_chart(charts.curves_figure(curves, floor, METHODS[method].title), key="attr_inspect_curves",
                            config={"displayModeBar": False})  # fmt: skip
        trust_ui.sanity_ui(model, image, result)


def _enough_steps_ui(model: LoadedModel, image: LoadedImage, target: int, params: dict[str, Any]) -> None:
    """Under an Integrated Gradients map that misses its logit change: a button that doubles the steps until the map
    adds up, then sets the steps slider to what it found (each try is a cached map, so the grid redraws at once)."""
    steps = int(params.get("steps") or 32)
    most = int(next(r for r in METHODS["integrated_gradients"].schema() if r.name == "steps").page_high)
    if steps >= most or not st.button(
        "Find enough steps", key=f"ig_enough_{target}",
        help=f"Doubles the steps from {steps}, up to {most}, until the map adds up to within {TOLERANCE:.0%} of the "
        "logit change. The error does not always fall at the next doubling (the gradient jumps wherever a ReLU "
        "switches), so every doubling is tried.",
    ):  # fmt: skip
        return
    plan = _doublings(steps, most)
    bar = st.progress(0.0, text=f"Trying {steps} steps…")
    start = time.monotonic()

    def on_try(tried: int) -> None:  # the cost of a try grows with its steps: the bar and the time left follow it
        done = sum(plan[: plan.index(tried)]) / sum(plan)
        left = seconds_left(start, done)
        bar.progress(done, text=f"Trying {tried} steps (try {plan.index(tried) + 1} of at most {len(plan)})…"
                     + (f" about {left:.0f} s left at most" if left is not None else ""))  # fmt: skip

    cache = resources.result_cache()
    found = attempt(lambda: enough_steps(model, image, target, start=steps, most=most, cache=cache, on_try=on_try,
                                         **params), "searching for enough steps")  # fmt: skip
    bar.empty()
    if found is None:
        return
    rel, used = found.extras["relative_delta"], found.params["steps"]
    method_settings_ui.ask(method_settings_ui.setting_key("integrated_gradients", "steps"), used)
    st.session_state[_STEPS_NOTE] = (
        f"At {used} steps the map adds up to within {rel:.1%} of the logit change; the steps are set to {used}."
        if not found.incomplete else
        f"Even at {most} steps the map misses the logit change by more than {TOLERANCE:.0%}; the closest, {used} steps "
        f"({rel:.1%}), is set. Read this map with care, or try another baseline."
    )  # fmt: skip
    st.rerun()


def _doublings(start: int, most: int) -> list[int]:
    """The steps :func:`interp.attribution.enough_steps` tries at most, in turn: doubled from ``start``, the last at
    ``most``."""
    plan = [start]
    while plan[-1] < most:
        plan.append(min(2 * plan[-1], most))
    return plan


def _cell_caption(result: Attribution) -> str:
    timing = f"{result.seconds:.2f} s" + (", cached" if result.extras.get("cached") else "")
    completeness = result.completeness()
    return f"{timing} · {completeness}" if completeness else timing


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
    c1.download_button("Grid as PNG", lambda: grid_png(rows, cols, overlays), f"{stem}_grid.png", "image/png",
                       key="dl_png", on_click="ignore")  # fmt: skip
    c2.download_button("Raw maps (.npz)", npz, f"{stem}_attributions.npz", "application/octet-stream",
                       key="dl_npz", on_click="ignore")  # fmt: skip
    c3.download_button("Settings (JSON)", settings, f"{stem}_settings.json", "application/json",
                       key="dl_json", on_click="ignore")  # fmt: skip
