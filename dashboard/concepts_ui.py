"""Widgets and views of the Concepts page: the concept library, a TCAV run, its results."""

from __future__ import annotations

import secrets
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, permalink, resources, state
from dashboard.feedback import attempt, guarded, sentence
from interp.concepts import (
    CLASSIFIERS,
    ConceptLibrary,
    ConceptSet,
    LibraryError,
    TCAVReport,
    VisitorLibrary,
    default_layers,
    generated,
    run_tcav,
    seconds_left,
)
from interp.concepts.library import prune_visitors, touch
from interp.datasets import zips
from interp.errors import InterpError
from interp.images import UPLOAD_EXTENSIONS, LoadedImage, load_image
from interp.models import LoadedModel
from interp.words import counted

SOURCES = (
    "Generated texture", "Shapes world concept", "Bundled photos", "Upload images or a zip", "A class of a dataset",
    "The failure gallery's selection",
)  # fmt: skip
DEMO_IMAGES = 24
MAX_UPLOAD_IMAGES = 300
VISITOR_KEEP_S = 86_400  # a visitor's own sets are deleted a day after the last use of their session


def library() -> VisitorLibrary:
    """What this visitor sees: their own sets (a folder of theirs, which no other visitor reads) and the server's
    shared library. Their folder is named by a random token kept in the session."""
    visitors = resources.settings().cache_dir / "concept-visitors"
    token = st.session_state.get("_concept_owner")
    if token is None:
        token = st.session_state["_concept_owner"] = secrets.token_hex(12)
        prune_visitors(visitors, keep=visitors / token, max_age_s=VISITOR_KEEP_S)
    touch(visitors / token)
    return VisitorLibrary(ConceptLibrary(visitors / token), shared_library(),
                          frozenset(st.session_state.get("_concept_shared", ())))  # fmt: skip


@st.cache_resource(show_spinner=False)
def shared_library() -> ConceptLibrary:
    """The server's shared concept library under the cache folder, kept across restarts: the demo sets and the sets
    visitors chose to share."""
    lib = ConceptLibrary(resources.settings().cache_dir / "concepts")
    if not lib.sets():  # a first visit finds demo concepts ready, offline
        for kind in generated.TEXTURES:
            lib.save_set(kind, generated.texture_set(kind, DEMO_IMAGES), f"generated {kind} textures", replace=True)
        for kind in generated.SHAPES_CONCEPTS:
            lib.save_set(f"shapes {kind}", generated.shapes_concept(kind, DEMO_IMAGES),
                         f"the shapes world's {kind} concept", replace=True)  # fmt: skip
    return lib


@st.cache_resource(max_entries=16, show_spinner=False)
def _set_images(folder: str, files: tuple[str, ...]) -> list[LoadedImage]:
    return ConceptSet("", Path(folder), files).images()


def set_images(s: ConceptSet) -> list[LoadedImage]:
    """A saved set's images, decoded once per folder and content (a set saved again under its name is new)."""
    return _set_images(str(s.folder), s.files)


# ------------------------------------------------------------------------------------------------------ library


def library_ui(lib: VisitorLibrary) -> None:
    """The saved sets with a few thumbnails each, whose they are, and a way to delete the visitor's own."""
    sets = lib.sets()
    msg = st.session_state.pop("_concept_msg", None)  # what a Delete or Share click did, said once
    # keyed: a label that counts the sets changes with a deletion, and would otherwise close the box on its message
    with st.expander(f"Concept library ({counted(len(sets), 'set')})", key="concept_library"):
        if msg:
            kind, text = msg
            (st.success if kind == "done" else st.error)(text)
        st.caption("Sets you save are yours alone: no other visitor sees them, and they last while this browser tab "
                   "keeps its session (reloading the page starts a new one). Shared sets are seen by every visitor "
                   "and can be named in links.")  # fmt: skip
        for s in sets:
            c1, c2, c3 = st.columns([2, 6, 1])
            whose = "yours" if lib.is_own(s.name) else "shared by you" if lib.deletable(s.name) else "shared"
            c1.markdown(f"**{s.name}**  \n{counted(len(s.files), 'image')} · {whose}"
                        + (f"  \n*{s.description}*" if s.description else ""))  # fmt: skip
            with c2:
                st.image([str(s.folder / f) for f in s.files[:8]], width=56)
            if lib.deletable(s.name):
                c3.button("Delete", key=f"concept_delete_{s.name}", on_click=_delete, args=(s.name,))
            if lib.is_own(s.name) and resources.settings().share_concepts:
                c3.button("Share", key=f"concept_share_{s.name}", on_click=_share, args=(s.name,),
                          help="Every visitor of this server will see it, and a link can name it.")  # fmt: skip


@guarded("deleting the concept set")
def _delete(name: str) -> None:
    try:
        library().delete(name)
        st.session_state["_concept_shared"] = set(st.session_state.get("_concept_shared", ())) - {name}
        st.session_state["_concept_msg"] = ("done", f"Deleted the set {name!r} and its CAVs.")
    except LibraryError as exc:
        st.session_state["_concept_msg"] = ("failed", sentence(str(exc)))


@guarded("sharing the concept set")
def _share(name: str) -> None:
    try:
        shared = library().share(name)
        st.session_state["_concept_shared"] = {*st.session_state.get("_concept_shared", ()), shared.name}
        st.session_state["_concept_msg"] = ("done", f"Shared the set {name!r}: every visitor of this server sees it.")
    except LibraryError as exc:
        st.session_state["_concept_msg"] = ("failed", sentence(str(exc)))


def new_set_ui(lib: VisitorLibrary) -> None:
    """Build a concept set from one source and save it under a name: the visitor's own, or shared where the server
    allows it."""
    with st.expander("New concept set"):
        name = st.text_input("Name", key="concept_new_name", placeholder="e.g. striped")
        source = st.radio("Images from", SOURCES, key="concept_new_source", horizontal=True)
        images, notes = _source_images_ui(source)
        if notes:
            st.caption(" ".join(notes))
        st.caption(f"{counted(len(images), 'image')} ready.")
        share = resources.settings().share_concepts and st.checkbox(
            "Share it with every visitor of this server", key="concept_new_share",
            help="A shared set is listed for everyone and a link can name it (a class opening a teacher's link needs "
            "that); only you, in this session, or whoever runs the server can delete it. Unshared, nobody else sees "
            "your images.",
        )  # fmt: skip
        # saved in the click's callback, before the page is drawn again: the library above lists the new set at once
        st.button("Save the set", key="concept_new_save", disabled=not images or not name.strip(), on_click=_save_new,
                  args=(name.strip(), images, bool(share)))  # fmt: skip
        if msg := st.session_state.pop("_concept_new_msg", None):
            kind, text = msg
            (st.success if kind == "done" else st.error)(text)


@guarded("saving the concept set")
def _save_new(name: str, images: list[LoadedImage], share: bool) -> None:
    try:
        saved = library().save_set(name, images, share=share)
    except LibraryError as exc:
        st.session_state["_concept_new_msg"] = ("failed", sentence(str(exc)))
        return
    if share:
        st.session_state["_concept_shared"] = {*st.session_state.get("_concept_shared", ()), saved.name}
    st.session_state["_concept_new_msg"] = ("done", f"Saved {saved.name!r} with {counted(len(saved.files), 'image')}"
                                            + (", shared with every visitor." if share else ", for you alone."))


def _source_images_ui(source: str) -> tuple[list[LoadedImage], list[str]]:
    if source == "Generated texture":
        kind = st.selectbox("Texture", generated.TEXTURES, key="concept_new_texture")
        n = st.slider("Images", 8, 100, 30, key="concept_new_n")
        return generated.texture_set(kind, n, seed=int(st.number_input("Seed", 0, 10_000, 0, key="concept_new_seed"))), []
    if source == "Shapes world concept":
        kind = st.selectbox("Concept", generated.SHAPES_CONCEPTS, key="concept_new_shapes")
        return generated.shapes_concept(kind, st.slider("Images", 8, 100, 30, key="concept_new_shapes_n")), []
    if source == "Bundled photos":
        import interp

        names = st.multiselect("Photos", list(interp.SAMPLES), key="concept_new_photos")
        return [resources.sample_image(n) for n in names], []
    if source == "Upload images or a zip":
        files = st.file_uploader("Images, or a zip of images", type=[*UPLOAD_EXTENSIONS, "zip"], accept_multiple_files=True,
                                 key="concept_new_files")  # fmt: skip
        return read_uploads(files or [])
    if source == "The failure gallery's selection":
        return _gallery_selection()
    return _dataset_class_ui()


def _gallery_selection() -> tuple[list[LoadedImage], list[str]]:
    picked = state.get("_gallery_selection")
    if not picked:
        return [], ["Open the Failures page, scan a dataset and filter its gallery; the mistakes shown there can be "
                    "saved here as a concept set."]  # fmt: skip
    images, skipped = [], []
    for path in picked["paths"]:
        try:
            images.append(resources.dataset_image(picked["source"], path))
        except InterpError:
            skipped.append(path)
    notes = [f"From the gallery: {picked['what']} (up to 200)."]
    if skipped:
        notes.append(f"Skipped {counted(len(skipped), 'unreadable file')}.")
    return images, notes


def read_uploads(files) -> tuple[list[LoadedImage], list[str]]:
    """Decode uploaded images and the images inside uploaded zips; what cannot be read is skipped and named."""
    images, skipped = [], []
    for f in files:
        data = f.getvalue()
        if f.name.lower().endswith(".zip"):
            try:
                archive = zips.open_zip(data, f.name)
            except InterpError:
                skipped.append(f.name)
                continue
            with archive:
                members, unsafe = zips.image_members(archive)
                skipped += unsafe
                for info in members:
                    if len(images) >= MAX_UPLOAD_IMAGES:
                        skipped.append(info.filename)
                        continue
                    try:
                        images.append(load_image(zips.read_member(archive, info), name=info.filename))
                    except (InterpError, zips.MemberTooLarge, zipfile.BadZipFile, OSError, RuntimeError, EOFError):
                        skipped.append(info.filename)
            continue
        try:
            images.append(load_image(data, name=f.name))
        except InterpError:
            skipped.append(f.name)
    notes = [f"Skipped {counted(len(skipped), 'file')} that are not readable images: {', '.join(skipped[:5])}."
             ] if skipped else []  # fmt: skip
    return images, notes


def _dataset_class_ui() -> tuple[list[LoadedImage], list[str]]:
    roots = attempt(resources.dataset_roots, "reading the dataset settings") or []
    if not roots:
        return [], ["No dataset is configured."]
    root = st.selectbox("Dataset", roots, format_func=lambda r: r.name, key="concept_new_dataset")
    ds = attempt(lambda: resources.dataset(root), f"reading {root.name}")
    if ds is None or not ds.class_names:
        return [], ["This dataset has no classes to pick from."]
    cls = st.selectbox("Class", ds.classes_present(), format_func=lambda i: ds.class_names[i], key="concept_new_class")
    n = st.slider("Images", 4, 100, 30, key="concept_new_class_n")
    items = [it for it in ds.items if cls in it.labels][:n]
    images, skipped = [], []
    for it in items:
        try:
            images.append(resources.dataset_image(root, it.path))
        except InterpError:
            skipped.append(it.path)
    return images, [f"Skipped {counted(len(skipped), 'unreadable file')}."] if skipped else []


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


def setup_ui(model: LoadedModel, lib: VisitorLibrary, predicted: int) -> TCAVChoice:
    names = [s.name for s in lib.sets()]
    shapes = model.num_classes == 6 and "star" in model.class_names
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
                                  args=(keys["concepts"],))
        layers = st.multiselect("Layers", modules, key=keys["layers"], on_change=state.keep, args=(keys["layers"],),
                                help="Any module; the defaults are one layer halfway through and the last "
                                "feature layer.")  # fmt: skip
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
        random_size = st.slider("Images per random set", 8, 100, 30, key="tcav_random_size", bind="query-params")
    c3, c4, c5 = st.columns(3)
    runs = c3.slider("Runs", 2, 50, 10, key="tcav_runs", bind="query-params")
    seed = int(c4.number_input("Seed", 0, 1_000_000, 0, key="tcav_seed", bind="query-params"))
    classifier = c5.selectbox("Linear classifier", CLASSIFIERS, key="tcav_classifier", bind="query-params",
                              format_func={"sgd": "SGD (hinge)", "logistic": "logistic regression", "svm": "linear SVM"}.get)  # fmt: skip
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
            permalink.note(f"The link's {name.replace('_', ' ')} “{linked}” are not offered here; showing "
                           f"“{defaults[name]}”.")  # fmt: skip
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
    return [make(choice.random_size, seed=choice.seed * 1000 + k) for k in range(choice.runs + 1)]


def run_ui(model: LoadedModel, choice: TCAVChoice, sidebar_image: LoadedImage | None
           ) -> tuple[TCAVReport, list[LoadedImage]] | None:  # fmt: skip
    """The Run button; the report and the class images are kept in the session, so that changing a view does not
    recompute them. A link to shown results (``tcav=1``) runs them when it is opened: from the result cache, where
    this server has computed them, in a moment."""
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

        def work() -> tuple[TCAVReport, list[LoadedImage]]:
            lib = library()
            concepts = {n: set_images(lib.get(n)) for n in choice.concepts}
            klass = class_images(model, choice, sidebar_image)
            cache = resources.result_cache()
            # a class opening one tcav=1 link: one session extracts, the others wait and then read its cache
            with cache.computing(f"tcav|{model.key}|{choice!r}"):
                report = run_tcav(model, list(choice.layers), concepts, random_sets(choice), klass, choice.target,
                                  runs=choice.runs, seed=choice.seed, classifier=choice.classifier, cache=cache,
                                  progress=progress)  # fmt: skip
            return report, klass

        done = attempt(work, "running TCAV")
        bar.empty()
        if done is not None:
            st.session_state[key] = done
    permalink.publish(tcav="1" if key in st.session_state else None)
    return st.session_state.get(key)


# ------------------------------------------------------------------------------------------------------ results


def results_view(report: TCAVReport, images: list[LoadedImage]) -> None:
    table = pd.DataFrame(report.rows())
    st.plotly_chart(_bars(report), key="tcav_chart", config={"displayModeBar": False})
    verdicts = pd.DataFrame(
        [{"concept": r.concept, "layer": r.layer, "TCAV": f"{r.mean:.2f} ± {r.std:.2f}",
          "random": f"{r.random_scores.mean():.2f}", "CAV accuracy": f"{r.accuracies.mean():.0%}",
          "p-value": f"{r.p_value:.2g}", "verdict": r.verdict} for r in report.results]  # fmt: skip
    )
    st.dataframe(verdicts, hide_index=True)
    st.caption(
        f"{report.runs} runs, seed {report.seed}, {report.classifier}: the same inputs give the same numbers. A TCAV "
        "score is the share of the class images whose score rises along the concept's direction. Significance: a "
        "two-sided Welch t-test against random-vs-random runs, Bonferroni-corrected for "
        f"{counted(len(report.results), 'test')}."
    )
    undecided = [f"{r.concept} at {r.layer}" for r in report.results if r.needs_more_runs]
    if undecided:
        st.info(
            f"{', '.join(undecided)}: every run gave the same score, far from the random level, yet the test is not "
            f"significant. With no spread on the concept's side the test rests on the random runs alone, and "
            f"{report.runs} runs are too few for {counted(len(report.results), 'corrected test')}: raise Runs to "
            "decide it."
        )
    alike = list(dict.fromkeys(r.layer for r in report.results if r.alike_gradients))
    if alike:
        st.info(
            f"At {', '.join(alike)}, even random directions score 0 or 1: every one sends all the class images the "
            "same way, so their gradients there point nearly the same way. That happens next to the classifier, where "
            "the class score is almost linear in the layer, and with class images that are alike (crops of one photo). "
            "A TCAV score there says on which side of one direction the concept falls, not how many images use it: "
            "an earlier layer, or class images from a dataset, tell more."
        )
    st.download_button("Results (CSV)", table.to_csv(index=False), "tcav.csv", "text/csv", key="tcav_csv")
    _sensitivity_view(report, images)


def _bars(report: TCAVReport) -> go.Figure:
    fig = go.Figure()
    for layer in dict.fromkeys(r.layer for r in report.results):
        rows = [r for r in report.results if r.layer == layer]
        fig.add_trace(go.Bar(
            name=layer, x=[r.concept for r in rows], y=[r.mean for r in rows],
            error_y=dict(type="data", array=[r.std for r in rows]),
            text=["*" if r.significant else "" for r in rows], textposition="outside",
            hovertemplate="%{x} at " + layer + "<br>TCAV %{y:.2f}<extra></extra>",
        ))  # fmt: skip
    nulls = np.concatenate([r.random_scores for r in report.results])
    fig.add_hline(y=float(nulls.mean()), line_dash="dot", annotation_text="random concepts", line_color="grey")
    fig.update_layout(barmode="group", height=340, yaxis=dict(range=[0, 1.1], title="TCAV score"),
                      margin=dict(l=10, r=10, t=30, b=30), title=dict(text="TCAV per concept and layer (* significant)",
                      font=dict(size=13)))  # fmt: skip
    return fig


def _sensitivity_view(report: TCAVReport, images: list[LoadedImage]) -> None:
    options = list(range(len(report.results)))
    pick = st.selectbox("Per-image sensitivity of", options, key="tcav_sens",
                        format_func=lambda i: f"{report.results[i].concept} at {report.results[i].layer}")  # fmt: skip
    result = report.results[pick]
    order = np.argsort(-result.sensitivities)
    st.caption("Class images ranked by their directional derivative along the concept: how fast the class score "
               "grows when the layer's activations move towards the concept.")  # fmt: skip
    for title, idx in (("Most concept-aligned", order[:6]), ("Least concept-aligned", order[::-1][:6])):
        st.markdown(f"**{title}**")
        for col, i in zip(st.columns(6), idx):
            with col:
                st.image(images[i].image, width="stretch")
                st.caption(f"{images[i].name} · {result.sensitivities[i]:+.3g}")
