"""Widgets of the trust scores (``interp.evaluation``): under the Attribution page's maps (deletion and insertion
beside a random map's, the scoreboard, the randomisation sanity check), and the Failures page's "Which method to
trust" tab (the same scores on N images of the dataset, as mean ± 95% interval per method)."""

from __future__ import annotations

import io
import json
import math
import time
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, permalink, resources, state
from dashboard.feedback import attempt
from interp import cache
from interp.attribution import METHODS, Attribution
from interp.datasets import Dataset, DatasetRoot, ScanBusy
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.words import counted, percent_plus_minus, plus_minus

if TYPE_CHECKING:
    from dashboard.attribution_ui import AttributionChoice

DEFAULT = ["grad_cam", "saliency", "integrated_gradients"]
STEPS = [5, 10, 20, 40, 80]
REPLACEMENT_LABELS = {"noisy_linear": "noisy linear (ROAD)"}


def scores_ui(model: LoadedModel, image: LoadedImage, choice: AttributionChoice, cells: dict) -> dict | None:
    """The trust scores of every map when the visitor turns them on: deletion and insertion AUC (20 steps of
    16-pixel regions, blurred replacement) and the same for a random map per class, computed once and cached like the
    maps."""
    linked = permalink.take_one("scores")
    if linked is not None:
        state.put("attr_scores", linked == "1")
    state.restore("attr_scores", False)
    on = st.toggle(
        "Trust scores", key="attr_scores", on_change=state.keep, args=("attr_scores",),
        help="Deletion and insertion (Petsiuk et al. 2018): remove, or reveal on a blurred copy, each map's top "
        "regions first and follow the class probability. A faithful map makes it fall fast (low deletion) and rise "
        "fast (high insertion). Each score stands beside the floor it must beat: five random maps' mean, with their "
        "spread.",
    )  # fmt: skip
    if not on:
        permalink.publish(scores=None, score_steps=None, score_block=None, score_with=None)
        return None
    from interp.evaluation import REPLACEMENTS, grid_curves
    from interp.evaluation.faithfulness import model_block

    blocks = region_options(model)
    default_steps, default_with = 20, "blur"
    for param, key, allowed in (("score_steps", "attr_score_steps", STEPS), ("score_block", "attr_score_block", blocks),
                                ("score_with", "attr_score_replacement", REPLACEMENTS)):  # fmt: skip
        linked = permalink.take_one(param)
        value = int(linked) if linked is not None and linked.isdigit() and param != "score_with" else linked
        if linked is not None and value in allowed:
            state.put(key, value)
        elif linked is not None:
            permalink.note(f"The link's trust-score setting {param}={linked} is not one this page offers for "
                           f"{model.name}; the default is used.")  # fmt: skip
    state.restore("attr_score_steps", default_steps)
    c1, c2, c3 = st.columns(3)
    steps = c1.select_slider("Score steps", STEPS, key="attr_score_steps", on_change=state.keep,
                             args=("attr_score_steps",), help="Groups of regions removed or revealed in turn; each "
                             "costs two forward passes per map.")  # fmt: skip
    block = region_slider(c2, model, "attr_score_block")
    replacement = replacement_box(c3, "attr_score_replacement")
    permalink.publish(scores="1", score_steps=None if steps == default_steps else str(steps),
                      score_block=None if block == model_block(model) else str(block),
                      score_with=None if replacement == default_with else replacement)  # fmt: skip

    ready = [(t, m) for t in choice.targets for m in choice.methods if cells[(t, m)].result is not None]
    if not ready:
        return None
    work = f"{2 * (steps + 1)} forward passes" + (" and imputations" if replacement == "noisy_linear" else "")
    with st.spinner(f"Scoring {counted(len(ready), 'map')} (deletion and insertion, {work} each)…"):
        found = attempt(lambda: grid_curves(model, image, [cells[c].result for c in ready], steps=int(steps),
                                            replacement=replacement, block=block, cache=resources.result_cache()),
                        "scoring the maps")  # fmt: skip
    if found is None:
        return None
    floors, curves = found
    return {"floor": floors, "maps": dict(zip(ready, curves)), "block": block}


def replacement_box(where, key: str) -> str:
    """What removed pixels become: a blurred copy (the default), the mean colour, black, or ROAD's imputation."""
    from interp.evaluation import REPLACEMENTS

    state.restore(key, "blur")
    return where.selectbox(
        "Removed pixels become", REPLACEMENTS, key=key, on_change=state.keep, args=(key,),
        format_func=lambda r: REPLACEMENT_LABELS.get(r, r),
        help="A blurred copy keeps colours and layout, so the image stays close to real ones and a score falls because "
        "evidence is gone; the mean colour or black push the image further from anything the model saw. Noisy linear "
        "(ROAD, Rong et al. 2022) fills each removed pixel from the pixels around it, so not even the removed region's "
        "outline is left for the model to read; it takes a few seconds per map.",
    )  # fmt: skip


def region_options(model: LoadedModel) -> list[int]:
    """The region sides offered for ``model``: those that fit its input, and always its default."""
    from interp.evaluation import BLOCKS
    from interp.evaluation.faithfulness import model_block

    side = min(model.data_config["input_size"][-2:])
    return sorted({*(b for b in BLOCKS if b <= side), model_block(model)})


def region_slider(where, model: LoadedModel, key: str) -> int:
    """How much is removed at once: squares of 1 (single pixels) to 32 pixels of the model's input, 16 by default
    (less on small inputs), kept per visitor like the other settings."""
    from interp.evaluation.faithfulness import model_block

    options = region_options(model)
    default = model_block(model)
    state.restore(key, default)
    if st.session_state.get(key) not in options:  # kept from a model with a larger input
        state.put(key, default)
    return int(where.select_slider(
        "Region size", options, key=key, on_change=state.keep, args=(key,),
        format_func=lambda b: "single pixels" if b == 1 else f"{b}×{b} px",
        help="Single pixels are how the paper removes them, but taking scattered pixels away wrecks an image's fine "
        "texture everywhere at once, so a random map scores about as well as a real one and speckled maps (gradients, "
        "Integrated Gradients) are rewarded for the speckle. Whole squares (Samek et al. 2017) leave the rest of the "
        "image intact.",
    ))  # fmt: skip


def scoreboard_view(model: LoadedModel, choice: AttributionChoice, scores: dict | None) -> None:
    """The chosen methods ranked by each score, with one sentence that reads the table."""
    if not scores or not any(c is not None for c in scores["maps"].values()):
        return
    from interp.evaluation.scoreboard import scoreboard

    table = scoreboard((METHODS[method].title, charts.short_label(model.class_names[target]), curves,
                        scores["floor"][target])
                       for (target, method), curves in scores["maps"].items()
                       if curves is not None and scores["floor"].get(target) is not None)  # fmt: skip
    st.markdown("**Scoreboard**")
    st.markdown(scoreboard_sentence(table, scores.get("block", 1)))
    # The whole width, the answer's column first: beside the chart the last columns were cut off.
    st.dataframe(table, hide_index=True, column_order=list(SCOREBOARD_HELP), column_config={
        c: st.column_config.NumberColumn(format="%.3f", help=h) for c, h in SCOREBOARD_HELP.items() if h})  # fmt: skip
    st.plotly_chart(charts.scoreboard_figure(table), key="attr_scoreboard", config={"displayModeBar": False})


INSERTION_HELP = "Area under the class probability as the map's top squares are revealed first: higher is better."
DELETION_HELP = "Area under the class probability as the map's top squares are removed first: lower is better."
SCOREBOARD_HELP = {
    "method": None,
    "class": None,
    "insertion − random": "This map's insertion minus random maps': higher is better.",
    "insertion": INSERTION_HELP,
    "random insertion": "The same for random maps (their mean): the floor to read insertion against.",
    "deletion": DELETION_HELP,
    "random deletion": "The same for random maps: the floor to read deletion against.",
}


def scoreboard_sentence(table, block: int = 1) -> str:
    """The engine's reading of the scoreboard (:func:`interp.evaluation.scoreboard_sentence`) in Markdown: names
    escaped, the winning method bold, the class in italics."""
    from interp.evaluation.scoreboard import scoreboard_sentence as reading

    return reading(table, block, name=charts.md, strong=lambda s: f"**{s}**", emphasis=lambda s: f"*{s}*")


def sanity_ui(model: LoadedModel, image: LoadedImage, result: Attribution) -> None:
    """The cascading randomisation check of one map, on request (one run of the method per layer step)."""
    identity = json.dumps([model.key, image.digest, result.method, result.target, result.params], default=str)
    if st.button("Sanity check: randomise the model layer by layer", key="attr_sanity",
                 help="Adebayo et al. 2018: the weights are replaced by random ones from the top layer down, on a copy "
                 "of the model, and the map is compared with this one after each step. A map that stays the same "
                 "does not show what the model learned."):  # fmt: skip
        st.session_state["_sanity_for"] = identity
    if st.session_state.get("_sanity_for") != identity:
        return
    from interp.evaluation import map_randomisation

    with st.spinner(f"Running {METHODS[result.method].title} on the model randomised step by step…"):
        check = attempt(lambda: map_randomisation(model, image, result, cache=resources.result_cache()),
                        "running the sanity check")  # fmt: skip
    if check is None:
        return
    (st.warning if check.flagged else st.success)(check.sentence)
    st.plotly_chart(charts.sanity_figure(check), key="attr_sanity_chart", config={"displayModeBar": False})


def trust_view(model: LoadedModel, source: DatasetRoot, ds: Dataset) -> None:
    from interp.evaluation import evaluate_dataset, load_failures, load_scores, load_unreadable, summarise, verdict

    st.markdown("Which explanation method can you trust for this model? Each method explains the model's prediction "
                "on the first N images; its map's deletion and insertion scores are compared with a random map's. "
                "Higher gains are better. Where the dataset knows where the object is (the shapes world's masks, "
                "Open Images' boxes), the pointing game and the map's mass on the object are scored too.")  # fmt: skip
    if len(ds) < 2:  # one uploaded photo in a zip: a ranking over images needs images
        st.info(f"Ranking methods on a dataset needs at least 2 images; {ds.name} has {counted(len(ds), 'image')}. "
                "For one image's maps, turn on *Trust scores* on the Attribution page.")  # fmt: skip
        return
    usable = [m for m in METHODS if METHODS[m]().applies_to(model) is None]
    state.restore("trust_methods", [m for m in DEFAULT if m in usable])
    c1, c2 = st.columns([4, 1])
    methods = c1.multiselect("Methods", usable, key="trust_methods", format_func=lambda m: METHODS[m].title,
                             on_change=state.keep, args=("trust_methods",),
                             placeholder="Pick the methods to compare")  # fmt: skip
    n = c2.number_input("Images", 2, min(len(ds), 2000), min(50, len(ds)), key=f"trust_n_{source.name}")
    c3, c4, c5 = st.columns(3)
    steps = c3.select_slider("Steps", [5, 10, 20, 40], 20, key="trust_steps")
    block = region_slider(c4, model, "trust_block")
    replacement = replacement_box(c5, "trust_replacement")
    if not methods:
        st.info("Pick at least one method.")
        return
    name = (f"{model.key}-{'-'.join(sorted(methods))}-{steps}" + (f"-b{block}" if block != 1 else "")
            + (f"-{replacement}" if replacement != "blur" else ""))  # fmt: skip
    # scores of the engine that computed them: after an upgrade the methods are scored again, not read back
    engine = cache.engine_fingerprint()
    out = resources.settings().cache_dir / "evaluations" / engine / source.slug / name.replace("/", "_")
    done = load_scores(out) if out.exists() else None
    if st.button("Score the methods", type="primary", key="trust_start"):
        bar = st.progress(0.0, text="Starting…")
        start = time.monotonic()

        def progress(p) -> None:
            eta = f", about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            bar.progress(p.done / p.total, text=f"{p.done} / {p.total} images{eta}")

        def run():
            try:
                return evaluate_dataset(model, ds, methods, out, n=int(n), steps=int(steps), block=block,
                                        replacement=replacement, progress=progress)  # fmt: skip
            except ScanBusy:
                st.info("Another visitor is scoring these methods on this dataset right now; try again in a moment.")
                return None

        if attempt(run, "scoring the methods") is not None:
            bar.progress(1.0, text=f"Done in {time.monotonic() - start:.0f} s.")
        done = load_scores(out)
    if done is None or done.empty:
        st.caption("Nothing scored yet for these methods and settings. Scores are kept: a second click "
                   "continues where the first stopped, and anyone else choosing the same sees them at once.")
        return
    summary = summarise(done)
    summary["method"] = [METHODS[m].title for m in summary["method"]]
    st.markdown(verdict(summary, ds.name, name=charts.md, strong=lambda text: f"**{text}**"))
    shown = summary[["method", "images"]].copy()
    for col, name in TRUST_COLUMNS:
        shown[name] = [plus_minus(m, c) for m, c in zip(summary[col], summary[f"{col}_ci95"])]  # one image: no ±
    helps = {name: TRUST_HELP[col] for col, name in TRUST_COLUMNS}
    if "located" in summary and summary["located"].notna().any():  # the shapes world's masks, Open Images' boxes
        share = float(summary["object_share"].mean())
        for col, name in LOCATED_COLUMNS:
            shown[name] = ["" if math.isnan(m) else percent_plus_minus(m, c)
                           for m, c in zip(summary[col], summary[f"{col}_ci95"])]  # fmt: skip
            helps[name] = LOCATED_HELP[col].format(share=share)
    # The whole width: the answer's columns (the gains) first, none cut off beside the chart.
    st.dataframe(shown, hide_index=True,
                 column_config={name: st.column_config.TextColumn(help=text) for name, text in helps.items()})
    st.plotly_chart(_figure(summary), key="trust_chart", config={"displayModeBar": False})
    for method, why in load_failures(out).items():  # maps that could not be scored on some images, and why
        st.caption(f"{METHODS[method].title} could not be scored on {counted(len(why), 'image')}: "
                   f"{next(iter(why.values()))}")  # fmt: skip
    if unreadable := load_unreadable(out):  # files of the dataset that are not images we can read
        verb = "is" if len(unreadable) == 1 else "are"
        st.caption(f"{counted(len(unreadable), 'image')} could not be read and {verb} left out: "
                   f"{next(iter(unreadable.values()))}")  # fmt: skip
    buf = io.BytesIO()
    done.to_parquet(buf, index=False)
    downloads = st.container(horizontal=True)
    downloads.download_button("Scores (CSV)", done.to_csv(index=False), "scores.csv", "text/csv",
                              key="trust_csv", on_click="ignore")  # fmt: skip
    downloads.download_button("Scores (Parquet)", buf.getvalue(), "scores.parquet",
                              key="trust_parquet", on_click="ignore")  # fmt: skip


TRUST_COLUMNS = (("insertion_gain", "insertion gain"), ("deletion_gain", "deletion gain"),
                 ("insertion_auc", "insertion"), ("deletion_auc", "deletion"))  # fmt: skip
LOCATED_COLUMNS = (("pointing", "pointing game"), ("energy_inside", "mass on object"))
LOCATED_HELP = {
    "pointing": "How often the map's peak falls on the object (the images whose object's place the dataset knows); "
                "a peak placed at random: {share:.0%}. Mean ± 95% interval.",
    "energy_inside": "The share of the map's positive mass on the object; a map spread evenly: {share:.0%}.",
}
TRUST_HELP = {
    "insertion_gain": "Insertion minus a random map's on the same image: higher is better; mean ± 95% interval.",
    "deletion_gain": "A random map's deletion minus this map's on the same image: higher is better.",
    "insertion_auc": INSERTION_HELP,
    "deletion_auc": DELETION_HELP,
}


def _figure(summary) -> go.Figure:
    fig = go.Figure()
    for col, name in (("insertion_gain", "insertion gain"), ("deletion_gain", "deletion gain")):
        fig.add_bar(x=[charts.plot_text(m) for m in summary["method"]], y=summary[col], name=name,
                    error_y={"type": "data", "array": summary[f"{col}_ci95"]})  # fmt: skip
    fig.update_layout(height=300, barmode="group", margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      yaxis_title="better than a random map (AUC)", legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig
