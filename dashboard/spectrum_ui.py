"""The Features page's last view: dataset examples across a unit's spectrum, in the Distill layout, beside the
images optimised for the unit (kept by :mod:`dashboard.features_ui`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping

import streamlit as st

import interp
from dashboard import permalink, resources, state
from dashboard.features_ui import PARAM_NAMES, Plan, cached_visualisation
from dashboard.feedback import attempt
from dashboard.views import zipped
from interp.concepts import seconds_left
from interp.datasets import SHAPES_DATASET, DatasetRoot
from interp.errors import InterpError
from interp.features import COLUMNS, Objective, Spectrum, VisualiseSettings, spectrum, visualise
from interp.features.spectrum import spectrum_files
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.models.preprocess import model_sized
from interp.shapes import classifies_shapes
from interp.words import counted

BUNDLED = "Bundled photos"
MAX_SPECTRUM_IMAGES = 1000


def _sources(model: LoadedModel) -> list[str | DatasetRoot]:
    """Where the examples can come from, the first being the default: the shapes world for a model of shapes (photos
    say little about its units), else the bundled photos."""
    roots = attempt(resources.dataset_roots, "reading the dataset settings") or []
    sources = [BUNDLED, *roots, *state.get("_zip_datasets", [])]
    shapes = [s for s in sources if isinstance(s, DatasetRoot) and s.name == SHAPES_DATASET]
    if shapes and classifies_shapes(model.class_names):
        sources = [shapes[0], *(s for s in sources if s is not shapes[0])]
    return sources


def _dataset_images(root: DatasetRoot, n: int, model: LoadedModel, progress: Callable[[int, int], None] | None = None,
                    seed: int = 0) -> tuple[list[LoadedImage], int]:  # fmt: skip
    """``n`` images of a dataset, a seeded draw across it (the same on every run), each held at the size the model
    resizes it to (:func:`~interp.models.preprocess.model_sized`: the same pixels for the model; 1,000 photos of
    1024×768 in 0.35 GB instead of 3.1, Pillow holding RGB in 4 bytes a pixel) under the app's budget for images; and
    how many were unreadable. Not read through the pages' full-size dataset images, which would push everything else
    out of that budget. ``progress`` hears ``(read, total)`` while they are read (16 s for 1,000 photos of
    2048×1536), not when they are held."""

    def read() -> tuple[list[LoadedImage], int]:
        ds = resources.dataset(root)
        picks = ds.draw(n, seed)
        images, bad = [], 0
        for done, item in enumerate(picks):
            if progress is not None and done % 16 == 0:
                progress(done, len(picks))
            path = item.path
            try:
                image = interp.load_image(ds.path_of(path), name=path.rsplit("/", 1)[-1])
            except InterpError:
                bad += 1
                continue
            images.append(model_sized(model.transform, image))
        if progress is not None:
            progress(len(picks), len(picks))
        return images, bad

    return resources.held(("spectrum", root, n, model.key, seed), read)


def spectrum_ui(model: LoadedModel, objective: Objective, plan: Plan) -> None:
    sources = _sources(model)
    c1, c2, c3 = st.columns([2, 2, 1])
    source = permalink.linked(c1.selectbox, "Images", sources, key="feat_source",
                              format_func=lambda s: s if isinstance(s, str) else s.name,
                              help="The bundled photos, the built-in shapes world, datasets configured for this app "
                              "and zips uploaded on the Failures page.")  # fmt: skip
    n = permalink.linked(c2.slider, "How many", 16, MAX_SPECTRUM_IMAGES, 200, step=16, key="feat_spectrum_n",
                         disabled=source == BUNDLED)  # fmt: skip
    per_column = permalink.linked(c3.slider, "Per column", 1, 6, 3, key="feat_per_column")
    unit = Objective(objective.kind, objective.unit, objective.layer, objective.position)
    name = source if isinstance(source, str) else source.name
    key = ("_feat_spectrum", model.key, repr(unit), name, n, per_column)
    linked = permalink.take_one("spectrum") == "1"  # a link to shown examples finds them again as it opens
    if st.button("Find the examples", key="feat_spectrum_run") or (linked and repr(key) not in st.session_state):
        bar = st.progress(0.0, text="Reading the images…")
        start = time.monotonic()

        def progress(done: int, total: int, doing: str = "") -> None:
            left = seconds_left(start, done / max(total, 1))
            eta = f" · about {left:.0f} s left" if left is not None else ""
            bar.progress(done / max(total, 1), text=f"{doing}{done} of {total} images{eta}")

        if source == BUNDLED:
            images, bad = [resources.sample_image(s) for s in interp.sample_names()], 0
        else:
            reading = functools.partial(progress, doing="Reading the images: ")
            got = attempt(lambda: _dataset_images(source, n, model, reading), f"reading {name}")
            images, bad = got if got is not None else ([], 0)
        start = time.monotonic()  # the ranking's own estimate

        if images:
            result = attempt(lambda: _ranked(model, unit, images, per_column, repr(key), progress),
                             "ranking the images")  # fmt: skip
            if result is not None:  # the session keeps the images it shows, not all it ranked
                shown = {e.index: images[e.index] for examples in result.columns.values() for e in examples}
                st.session_state[repr(key)] = (result, shown, bad)
        else:
            st.warning(f"No readable images in {name}.")
        bar.empty()
    kept = st.session_state.get(repr(key))
    permalink.publish(spectrum=None if kept is None else "1")
    if kept is None:
        st.caption("Press “Find the examples” to rank the images by this unit.")
        return
    result, images, bad = kept
    if bad:
        st.caption(f"Skipped {counted(bad, 'unreadable image')}.")
    _spectrum_layout(model, result, images, unit, plan)
    stem = f"{model.name}_{unit.describe().removeprefix('maximise ').replace(' ', '_')}_spectrum"
    st.download_button("Download the examples (PNG crops and spectrum.json, zip)",
                       lambda: zipped(spectrum_files(model, result, images)), f"{stem}.zip", "application/zip",
                       key="feat_spectrum_dl", on_click="ignore")  # fmt: skip


def _ranked(model: LoadedModel, unit: Objective, images: list[LoadedImage], per_column: int, key: str,
            progress) -> Spectrum:  # fmt: skip
    """The spectrum, ranked by one session at a time per view (a class opening one ``spectrum=1`` link): the others
    wait, then read the activations it stored."""
    cache = resources.result_cache()
    with cache.computing(f"spectrum|{key}"):
        return spectrum(model, unit, images, per_column=per_column, cache=cache, progress=progress)


def _spectrum_layout(model: LoadedModel, s: Spectrum, images: Mapping[int, LoadedImage], unit: Objective, plan: Plan,
                     ) -> None:  # fmt: skip
    lo, hi = float(s.values.min()), float(s.values.max())
    field = "" if s.field is None else (
        f" A cell of this layer draws on about {s.field} px (the square that holds 90% of its input gradient, its "
        "effective receptive field): "
        + (f"the crops are {s.crop} px wide." if s.crop else "each image is shown whole.")
    )  # fmt: skip
    st.caption(f"{len(s.values)} images; the unit's values go from {lo:.3f} to {hi:.3f}. The middle columns sit either "
               f"side of {'zero' if s.centred_on == 'zero' else f'the median ({s.centre:.3f}): nothing here is negative'}"
               f".{field}")  # fmt: skip
    param = plan.params[0] if plan.params else "fft"
    settings = VisualiseSettings(**{**plan.settings.as_dict(), "param": param})
    titles = ["Negative optimised", *(s.label(c) for c in COLUMNS), "Positive optimised"]
    cols = st.columns(6)
    for col, title in zip(cols, titles):
        col.markdown(f"**{title}**")
    for col, negative in ((cols[0], True), (cols[5], False)):
        with col:
            v = cached_visualisation(model, unit.flipped() if negative else unit, settings)
            if v is not None:
                st.image(list(v.images), caption=[f"{x:+.2f}" for x in v.values], width="stretch")
            else:
                st.caption(f"Not optimised yet with these settings ({PARAM_NAMES[param]}).")
                if st.button("Optimise", key=f"feat_spectrum_opt_{negative}"):
                    target = unit.flipped() if negative else unit
                    with st.spinner("Optimising…"):
                        got = attempt(lambda: visualise(model, target, settings, cache=resources.result_cache()),
                                      "optimising the image")  # fmt: skip
                    if got is not None:
                        st.image(list(got.images), caption=[f"{x:+.2f}" for x in got.values], width="stretch")
    centre = "zero" if s.centred_on == "zero" else "the median"
    for col, column in zip(cols[1:5], COLUMNS):
        with col:
            if not s.columns[column]:
                side = "below" if column in ("minimum", "slightly negative") else "at or above"
                st.caption(f"No other image is {side} {centre}: each image appears in one column only.")
            for e in reversed(s.columns[column]) if column in ("maximum", "slightly positive") else s.columns[column]:
                view = resources.model_view(model.key, images[e.index].digest, model, images[e.index])
                picture = view if e.box is None else view[e.box[1] : e.box[3], e.box[0] : e.box[2]]
                st.image(picture, caption=f"{e.name[:24]} · {e.value:+.2f}", width="stretch")
