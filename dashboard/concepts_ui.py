"""Widgets and views of the Concepts page: a TCAV run and its results (its concept library:
:mod:`dashboard.concept_library_ui`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from dashboard import charts, permalink, resources, state
from dashboard.concept_library_ui import library, set_images
from dashboard.feedback import attempt, quoted
from interp.concepts import (
    CLASSIFIERS,
    TCAVReport,
    VisitorLibrary,
    default_layers,
    generated,
    run_tcav,
    seconds_left,
)
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.shapes import classifies_shapes
from interp.words import counted, joined

# --------------------------------------------------------------------------------------------------------- TCAV


@dataclass(frozen=True)
class TCAVChoice:
    concepts: tuple[str, ...]
    layers: tuple[str, ...]
    target: int
    class_source: str
    random_source: str
    random_size: int
    runs: int
    seed: int
    classifier: str


CLASSIFIER_NAMES = {"sgd": "SGD (hinge)", "logistic": "logistic regression", "svm": "linear SVM"}


def setup_ui(model: LoadedModel, lib: VisitorLibrary, predicted: int) -> TCAVChoice:
    names = [s.name for s in lib.sets()]
    shapes = classifies_shapes(model.class_names)
    default_concepts = [n for n in (["shapes marker", "shapes red"] if shapes else ["stripes", "dots"]) if n in names]
    modules = list(model.layer_names())
    class_options = ["Generated shapes of the class"] if shapes else []
    class_options += ["Crops of the sidebar image", *(f"Saved set: {n}" for n in names)]
    random_options = ["Shapes world backgrounds", "Random photo crops"]
    random_options = random_options if shapes else random_options[::-1]
    defaults = {"concepts": default_concepts, "layers": default_layers(model), "target": predicted,
                "class_images": class_options[0], "random_images": random_options[0]}  # fmt: skip
    keys = {name: f"tcav_{name}_{model.key}" for name in defaults}  # per model: another model starts from its own
    options = {"concepts": names, "layers": modules, "class_images": class_options, "random_images": random_options}
    _from_link(model, keys, defaults, options)
    c1, c2 = st.columns(2)
    with c1:
        concepts = st.multiselect("Concepts", names, key=keys["concepts"], on_change=state.keep,
                                  args=(keys["concepts"],), placeholder="Pick concept sets from the library")
        layers = st.multiselect("Layers", modules, key=keys["layers"], on_change=state.keep, args=(keys["layers"],),
                                placeholder="Pick layers: type a module's name",
                                format_func=resources.layer_label(model),
                                help="Any module, with its output for one image; the defaults are one layer halfway "
                                "through and the last feature layer.")  # fmt: skip
        target = st.selectbox("Target class", range(model.num_classes), key=keys["target"], on_change=state.keep,
                              args=(keys["target"],),
                              format_func=lambda i: charts.short_label(model.class_names[i]))  # fmt: skip
    with c2:
        class_source = st.selectbox("Images of the target class", class_options, key=keys["class_images"],
                                    on_change=state.keep, args=(keys["class_images"],))
        random_source = st.selectbox("Random images", random_options, key=keys["random_images"], on_change=state.keep,
                                     args=(keys["random_images"],),
                                     help="Each run trains the concept against its own random set; random-vs-random "
                                     "runs give the null distribution.")  # fmt: skip
        random_size = permalink.linked(st.slider, "Images per random set", 8, 100, 30, key="tcav_random_size")
    c3, c4, c5 = st.columns(3)
    runs = permalink.linked(c3.slider, "Runs", 2, 50, 10, key="tcav_runs")
    # drawn as a float input shown whole: Streamlit's integer input raised OverflowError on a link's "inf" (its
    # float input falls back to the default), and that stopped the page
    seed = int(permalink.linked(c4.number_input, "Seed", 0.0, 1_000_000.0, 0.0, 1.0, format="%.0f", key="tcav_seed"))
    classifier = permalink.linked(c5.selectbox, "Linear classifier", CLASSIFIERS, key="tcav_classifier",
                                  format_func=CLASSIFIER_NAMES.get)
    chosen = {"concepts": concepts, "layers": layers, "target": target, "class_images": class_source,
              "random_images": random_source}  # fmt: skip
    own = [n for n in (*concepts, class_source.removeprefix("Saved set: ")) if lib.is_own(n)]
    if own:
        how = ("Share them (the *Concept library*'s Share button) for a link to open with them."
               if resources.settings().share_concepts else "This server keeps each visitor's sets to themselves.")
        st.session_state.setdefault("_unshared", []).append(
            f"Your own concept sets ({', '.join(own)}) do not travel in a link: nobody else sees them. {how}"
        )
    permalink.publish(**{name: None if value == defaults[name] else value if isinstance(value, list) else str(value)
                         for name, value in chosen.items()})  # fmt: skip
    return TCAVChoice(tuple(concepts), tuple(layers), int(target), class_source, random_source, random_size, runs, seed, classifier)


def _from_link(model: LoadedModel, keys: dict[str, str], defaults: dict, options: dict[str, list[str]]) -> None:
    """Give the set-up's widgets what a shared link says (repeated ``concepts`` and ``layers``, ``target`` as a class
    index, ``class_images`` and ``random_images`` as the boxes show them), else the choice kept from earlier reruns
    and pages (:mod:`dashboard.state`), else their defaults. What of the link this server or model does not have is
    named in the share box; kept choices that are no longer offered (a deleted concept set) are dropped."""
    for name in ("concepts", "layers"):
        linked = permalink.take(name)
        if found := [v for v in dict.fromkeys(linked) if v in options[name]]:
            state.put(keys[name], found)
        if missing := [v for v in linked if v not in options[name]]:
            where = ("in this server's shared concept library (a set a visitor does not share is theirs alone)"
                     if name == "concepts" else f"modules of {model.name}")  # fmt: skip
            permalink.note(f"The link's {name} {', '.join(missing)} are not {where}.")
    target = permalink.take_class("target", model.num_classes, model.name)
    if target is not None:
        state.put(keys["target"], target)
    for name in ("class_images", "random_images"):
        linked = permalink.take_one(name)
        if linked in options[name]:
            state.put(keys[name], linked)
        elif linked:
            permalink.note(f"The link's {name.replace('_', ' ')} {quoted(linked)} are not offered here; showing "
                           f"{quoted(defaults[name])}.")  # fmt: skip
    for name, default in defaults.items():  # the choice kept from earlier reruns and pages, else the default
        state.restore(keys[name], default)
    for name, known in options.items():  # a concept set deleted since, or a saved set no longer offered
        kept = st.session_state[keys[name]]
        if isinstance(kept, list) and not set(kept) <= set(known):
            state.put(keys[name], [v for v in kept if v in known])
        elif not isinstance(kept, list) and kept not in known:
            state.put(keys[name], defaults[name])


def class_images(model: LoadedModel, choice: TCAVChoice, sidebar_image: LoadedImage | None, n: int = 24) -> list[LoadedImage]:
    if choice.class_source == "Generated shapes of the class":
        from interp.images import image_from_array
        from interp.shapes import generate

        name = model.class_names[choice.target]
        samples = [s for s in generate(n * 8, seed=choice.seed + 500, split="clean") if s.class_name == name][:n]
        return [image_from_array(s.image, f"{name}_{s.index}.png") for s in samples]
    if choice.class_source == "Crops of the sidebar image":
        if sidebar_image is None:
            return []
        return _crops(sidebar_image, n, choice.seed)
    return set_images(library().get(choice.class_source.removeprefix("Saved set: ")))


def _crops(image: LoadedImage, n: int, seed: int) -> list[LoadedImage]:
    from interp.images import image_from_array

    rng = np.random.default_rng(seed)
    im = image.image
    w, h = im.size
    out = []
    for i in range(n):
        side = int(rng.uniform(0.6, 1.0) * min(w, h))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out.append(image_from_array(np.asarray(im.crop((x, y, x + side, y + side))), f"crop_{i}.png"))
    return out


def random_sets(choice: TCAVChoice) -> list[list[LoadedImage]]:
    """``runs + 1`` distinct random sets, seeded: every run trains against its own set, plus one for the null."""
    make = generated.shapes_backgrounds if choice.random_source == "Shapes world backgrounds" else generated.random_images
    return [make(choice.random_size, seed=generated.random_set_seed(choice.seed, k)) for k in range(choice.runs + 1)]


SHOWN_SIDE = 256
"""The class images a session keeps beside its report are copies this large, for the most and least aligned rows
(six to a row): 24 crops of a 2048×1536 upload held 113 MB per session at full size, 4.5 MB so."""


def shown_copies(images: list[LoadedImage]) -> list[tuple[str, Image.Image]]:
    """``(name, picture)`` of each image, the picture at most :data:`SHOWN_SIDE` on its longer side."""
    copies = []
    for im in images:
        small = im.image
        if max(small.size) > SHOWN_SIDE:
            small = small.copy()
            small.thumbnail((SHOWN_SIDE, SHOWN_SIDE))
        copies.append((im.name, small))
    return copies


def run_ui(model: LoadedModel, choice: TCAVChoice, sidebar_image: LoadedImage | None
           ) -> tuple[TCAVReport, list[tuple[str, Image.Image]]] | None:  # fmt: skip
    """The Run button; the report and small copies of the class images (:func:`shown_copies`) are kept in the
    session, so that changing a view does not recompute them. A link to shown results (``tcav=1``) runs them when it
    is opened: from the result cache, where this server has computed them, in a moment."""
    key = f"_tcav_{model.key}_{hash(choice)}"
    linked = permalink.take_one("tcav") == "1"
    if not choice.concepts or not choice.layers:
        st.info("Pick at least one concept and one layer.")
        permalink.publish(tcav=None)
        return None
    if st.button("Run TCAV", type="primary", key="tcav_run") or (linked and key not in st.session_state):
        bar = st.progress(0.0, text="Extracting activations…")
        start = time.monotonic()

        def progress(what: str, fraction: float) -> None:
            left = seconds_left(start, fraction)
            eta = f" · about {left:.0f} s left" if left is not None else ""
            bar.progress(min(1.0, fraction), text=f"{what}…{eta}" if what != "done" else "Done.")

        def work() -> tuple[TCAVReport, list[tuple[str, Image.Image]]]:
            lib = library()
            concepts = {n: set_images(lib.get(n)) for n in choice.concepts}
            klass = class_images(model, choice, sidebar_image)
            cache = resources.result_cache()
            # a class opening one tcav=1 link: one session extracts, the others wait and then read its cache
            with cache.computing(f"tcav|{model.key}|{choice!r}"):
                report = run_tcav(model, list(choice.layers), concepts, random_sets(choice), klass, choice.target,
                                  runs=choice.runs, seed=choice.seed, classifier=choice.classifier, cache=cache,
                                  progress=progress)  # fmt: skip
            return report, shown_copies(klass)

        done = attempt(work, "running TCAV")
        bar.empty()
        if done is not None:
            st.session_state[key] = done
    permalink.publish(tcav="1" if key in st.session_state else None)
    return st.session_state.get(key)


# ------------------------------------------------------------------------------------------------------ results


def results_view(report: TCAVReport, images: list[tuple[str, Image.Image]]) -> None:
    table = pd.DataFrame(report.rows())
    st.plotly_chart(_bars(report), key="tcav_chart", config={"displayModeBar": False})
    verdicts = pd.DataFrame(
        [{"concept": r.concept, "layer": r.layer, "TCAV": f"{r.mean:.2f} ± {r.std:.2f}",
          "random": f"{r.random_scores.mean():.2f}", "CAV accuracy": f"{r.accuracies.mean():.0%}",
          "p-value": f"{r.p_value:.3g}", "verdict": r.verdict} for r in report.results]  # fmt: skip
    )
    st.dataframe(verdicts, hide_index=True)
    st.caption(
        f"{report.runs} runs, seed {report.seed}, {report.classifier}: the same inputs give the same numbers. A TCAV "
        "score is the share of the class images whose score rises along the concept's direction; ± is its standard "
        "deviation over the runs (the chart's whiskers stop at 0 and 1); the orange marks are each layer's level for "
        "random concepts, the one its tests compare against. Significance: a "
        "two-sided Welch t-test against random-vs-random runs, Bonferroni-corrected for "
        f"{counted(len(report.results), 'test')}."
    )
    undecided = [f"{r.concept} at {r.layer}" for r in report.results if r.needs_more_runs]
    if undecided:
        st.info(
            f"{joined(undecided)}: every run gave the same score, far from the random level, yet the test is not "
            f"significant. With no spread on the concept's side the test rests on the random runs alone, and "
            f"{report.runs} runs are too few for {counted(len(report.results), 'corrected test')}: raise Runs to "
            "decide it."
        )
    alike = list(dict.fromkeys(r.layer for r in report.results if r.alike_gradients))
    if alike:
        st.info(
            f"At {joined(alike)}, even random directions score 0 or 1: every one sends all the class images the "
            "same way, so their gradients there point nearly the same way. That happens next to the classifier, where "
            "the class score is almost linear in the layer, and when the class images are much alike (crops of one "
            "photo, say). "
            "A TCAV score there says on which side of one direction the concept falls, not how many images use it: "
            "an earlier layer, or class images from a dataset, tell more."
        )
    st.download_button("Results (CSV)", table.to_csv(index=False), "tcav.csv", "text/csv",
                       key="tcav_csv", on_click="ignore")  # fmt: skip
    _sensitivity_view(report, images)


def _bars(report: TCAVReport) -> go.Figure:
    fig = go.Figure()
    layers: dict[str, list] = {}
    for r in report.results:  # in the report's order
        layers.setdefault(r.layer, []).append(r)
    for layer, rows in layers.items():
        fig.add_trace(go.Bar(
            name=layer, x=[r.concept for r in rows], y=[r.mean for r in rows], offsetgroup=layer,
            # the spread over runs, cut at 0 and 1, which no score passes (0.70 ± 0.48 drew a whisker past the axis)
            error_y=dict(type="data", array=[min(r.std, 1 - r.mean) for r in rows],
                         arrayminus=[min(r.std, r.mean) for r in rows], symmetric=False),
            customdata=["significant" if r.significant else "not significant" for r in rows],
            hovertemplate="%{x} at " + layer + "<br>TCAV %{y:.2f}, %{customdata}<extra></extra>",
        ))  # fmt: skip
    for layer, rows in layers.items():  # after the bars, which keep the theme's first colours
        # a significant score's mark sits above its error bar (as the bar's own text it hid behind the bar)
        fig.add_trace(go.Scatter(
            x=[r.concept for r in rows], y=[min(r.mean + r.std, 1) + 0.05 if r.significant else None for r in rows],
            offsetgroup=layer, mode="text", text=["*" if r.significant else "" for r in rows],
            textfont=dict(size=18, color="#888888"), showlegend=False, hoverinfo="skip",
        ))  # fmt: skip
    width = int(np.clip(420 / len(report.results), 12, 60))  # about two thirds of a bar on a wide page
    for n, (layer, rows) in enumerate(layers.items()):
        # each layer's own random level, over its bars: every test is against its layer's random runs, and the levels
        # differ (0.53 at Lite0's blocks.3, 0.60 at bn2; one line at their mean put a score between them on the wrong
        # side of one of them)
        fig.add_trace(go.Scatter(
            x=[r.concept for r in rows], y=[float(r.random_scores.mean()) for r in rows], offsetgroup=layer,
            mode="markers", marker=dict(symbol="line-ew", size=width, line=dict(width=3, color="#e8710a")),
            name="random concepts", legendgroup="random", showlegend=n == 0,
            hovertemplate="random concepts at " + layer + ": %{y:.2f}<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(barmode="group", scattermode="group", height=340, yaxis=dict(range=[0, 1.15], title="TCAV score"),
                      margin=dict(l=10, r=10, t=30, b=30), title=dict(text="TCAV per concept and layer (* significant)",
                      font=dict(size=13)))  # fmt: skip
    return fig


def _sensitivity_view(report: TCAVReport, images: list[tuple[str, Image.Image]]) -> None:
    labels = [f"{r.concept} at {r.layer}" for r in report.results]  # the labels as options: another report's pairs
    result = report.results[labels.index(st.selectbox("Per-image sensitivity of", labels, key="tcav_sens"))]
    order = np.argsort(-result.sensitivities)
    st.caption("Class images ranked by their directional derivative along the concept: how fast the class score "
               "grows when the layer's activations move towards the concept.")  # fmt: skip
    # one number of decimals for all, three significant digits for the largest: +0.0397 beside +0.0003, not +0.00026
    largest = float(np.abs(result.sensitivities).max()) if len(result.sensitivities) else 0.0
    decimals = max(0, 2 - math.floor(math.log10(largest))) if largest > 0 else 0
    for title, idx in (("Most concept-aligned", order[:6]), ("Least concept-aligned", order[::-1][:6])):
        st.markdown(f"**{title}**")
        for col, i in zip(st.columns(6), idx):
            with col:
                name, picture = images[i]
                st.image(picture, width="stretch")
                st.caption(f"{name} · {result.sensitivities[i]:+.{decimals}f}")
