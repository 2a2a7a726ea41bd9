"""Widgets and views of the Failures page: pick a dataset, browse it, scan it, and study the confident mistakes."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, permalink, resources, sidebar, state
from dashboard.feedback import attempt, guarded, quoted, sentence
from dashboard.why_ui import why_view
from interp.datasets import (
    SHAPES_DATASET,
    ConfiguredRoots,
    Dataset,
    DatasetError,
    DatasetRoot,
    ScanBusy,
    class_names_of,
    confusion_pairs,
    damaged_note,
    extract_zip,
    failures,
    load_scan,
    per_class_accuracy,
    read_folder,
    scan,
    scan_folder,
    several_labels,
    summary,
    true_labels,
    true_names,
)
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.words import counted, names_line

PER_PAGE = 24
SHAPES_MODELS = ("shapes_cnn", "shapes_vit")  # the models that know the shapes world's classes
COLUMNS = 6
ZIP_MB = 200


# ---------------------------------------------------------------------------------------------- dataset choice


def dataset_picker_ui() -> tuple[DatasetRoot, Dataset] | tuple[None, None]:
    configured = attempt(resources.dataset_settings, "reading the dataset settings") or ConfiguredRoots([], [])
    for problem in configured.problems:  # the rest of the settings still serve
        st.warning(f"A dataset in this server's settings could not be read: {sentence(problem)} Whoever runs the app "
                   "can correct it; the other datasets work.")  # fmt: skip
    sources = [r for r in configured.roots if isinstance(r, DatasetRoot)] + list(state.get("_zip_datasets", []))
    if not sources:
        return None, None
    names = [s.name for s in sources]
    state.restore("gallery_dataset", names[0])
    linked = permalink.take_one("data")
    if linked in names:
        state.put("gallery_dataset", linked)
    elif linked:
        permalink.note(f"The link's dataset {quoted(linked)} is not available here (a zip someone uploaded stays "
                       "with their session); showing another.")  # fmt: skip
    if st.session_state["gallery_dataset"] not in names:
        state.put("gallery_dataset", names[0])
    left, right = st.columns([2, 1])
    with left:
        name = st.selectbox("Dataset", names, key="gallery_dataset", on_change=state.keep, args=("gallery_dataset",),
                            help="Datasets configured by whoever runs this app, the built-in shapes world, and zips "
                            "you upload (kept for this session).")  # fmt: skip
    with right:
        # stateful (a key and reruns on opening), so that a zip taken closes it: left open, it covered the gallery
        with st.popover("Use your own images (zip)", key="gallery_zip_open", on_change="rerun"):
            st.file_uploader(f"A zip with one folder of images per class (up to {ZIP_MB} MB)", type=["zip"],
                             key="gallery_zip", on_change=_take_zip, max_upload_size=ZIP_MB)  # fmt: skip
    if state.get("_zip_error"):
        st.error(state.get("_zip_error"))
    if not any(s.kind in ("imagenet", "openimages") for s in sources):
        st.caption(
            "No ImageNet validation or Open Images folder is configured here. Whoever runs the app lists them in "
            "INTERP_DATASETS or in Streamlit secrets (see the README); the shapes world and zips work anywhere."
        )
    permalink.publish(data=None if name == names[0] else name)
    source = sources[names.index(name)]
    spinner = "Generating the shapes test split (first use only)…" if source.name == SHAPES_DATASET else "Reading…"
    with st.spinner(spinner):
        ds = attempt(lambda: resources.dataset(source), f"reading {source.name}")
    if ds is None:
        return None, None
    if not len(ds):
        st.warning(f"{source.name} holds no image this app can read; pick another dataset.")
        return None, None
    for note in ds.notes:
        st.caption(sentence(note) + ".")
    return source, ds


@guarded("reading the zip")
def _take_zip() -> None:
    upload = st.session_state.get("gallery_zip")
    if upload is None:
        return
    try:
        folder, skipped = extract_zip(upload.getvalue(), resources.settings().cache_dir / "uploads", upload.name)
        read_folder(folder)  # fails now, with a sentence, if nothing usable is inside
    except InterpError as exc:
        st.session_state["_zip_error"] = sentence(str(exc))
        return
    name = f"Upload · {upload.name}"
    zips = [z for z in state.get("_zip_datasets", []) if z.name != name]
    st.session_state["_zip_datasets"] = [*zips, DatasetRoot(name, "zip", folder)][-3:]
    state.put("gallery_dataset", name)
    st.session_state.pop("_zip_error", None)
    st.session_state["gallery_zip_open"] = False  # the popover closes on the new dataset; a refused zip keeps it open
    if skipped:
        st.session_state["_zip_note"] = (f"Skipped {counted(len(skipped), 'entry', 'entries')} of {upload.name} (not "
                                         "images, or unsafe names): " + ", ".join(skipped[:5]))  # fmt: skip


# ------------------------------------------------------------------------------------------------------ browse


def browse_view(source: DatasetRoot, ds: Dataset) -> None:
    """Paged thumbnails with their labels and a class filter; any image can be opened on the other pages."""
    if state.get("_zip_note"):
        st.caption(state.get("_zip_note"))
    classes = ["all classes"] + [ds.class_names[i] for i in ds.classes_present()] if ds.class_names else ["all classes"]
    c1, c2 = st.columns([2, 1])
    chosen = c1.selectbox("Class", classes, key=f"browse_class_{source.name}")
    items = list(ds.items) if chosen == "all classes" else [i for i in ds.items if chosen in i.label_names]
    page = _pager(c2, len(items), f"browse_page_{source.name}_{chosen}")
    shown = items[page * PER_PAGE : (page + 1) * PER_PAGE]
    # an Open Images photo's classes as the gallery names them ("tabby / golden retriever"), not one comma list
    _thumbnails(source, [(it.path, names_line(it.label_names, most=3) or it.label_name) for it in shown], "browse")


def _pager(container, count: int, key: str) -> int:
    pages = max(1, -(-count // PER_PAGE))
    page = container.number_input(f"Page (of {pages}; {counted(count, 'image')})", 1, pages, 1, key=key)
    return int(page) - 1


def _thumbnails(source: DatasetRoot, cells: list[tuple[str, str]], prefix: str) -> None:
    for start in range(0, len(cells), COLUMNS):
        for col, (path, caption) in zip(st.columns(COLUMNS), cells[start : start + COLUMNS]):
            with col:
                thumb = resources.dataset_thumbnail(source, path)
                if thumb is None:
                    st.warning("unreadable")
                else:
                    st.image(thumb, width="stretch")
                st.caption(caption)
                st.button("Open", key=f"{prefix}_{path}", on_click=sidebar.send_to_pages, args=(source, path),
                          help="Show this image on every page (the sidebar's image).", width="stretch")  # fmt: skip


# -------------------------------------------------------------------------------------------------------- scan


def scan_dir(model: LoadedModel, source: DatasetRoot) -> Path:
    """The scan folder the CLI's ``scan`` also writes (:func:`interp.datasets.scan_folder`)."""
    return scan_folder(resources.settings().cache_dir, model.key, source)


def scan_view(model: LoadedModel, source: DatasetRoot, ds: Dataset) -> None:
    """Start or resume a scan; progress with images/s and ETA; any click elsewhere stops it with rows kept."""
    out = scan_dir(model, source)
    _, rows = _scan_rows(out)
    c1, c2, c3 = st.columns(3)
    limit = c1.number_input("Images to scan", 1, len(ds), min(len(ds), 1000), key=f"scan_limit_{source.name}",
                            help="The first N images; classes alternate, so N spans them.")  # fmt: skip
    batch = c2.select_slider("Batch size", [8, 16, 32, 64], 32, key="scan_batch")
    scanned = c3.empty()
    scanned.metric("Already scanned", f"{len(rows)} / {len(ds)}")
    _labels_note(model, source, ds, "scan_switch_model")
    if not st.button("Start or resume the scan", type="primary", key="scan_start"):
        if len(rows) and len(rows) < limit:
            st.caption("A scan stopped part-way resumes where it stopped: no image is classified twice.")
        return
    bar = st.progress(0.0, text="Starting…")
    st.caption("Clicking anything else stops the scan; what is done is kept, and starting again resumes.")
    start = time.monotonic()

    def progress(p) -> None:
        eta = f", about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        bar.progress(p.fraction, text=f"{p.done} / {p.total} images · {p.images_per_s:.1f} images/s{eta}"
                     + (f" · {p.skipped} unreadable" if p.skipped else ""))  # fmt: skip

    busy: list[ScanBusy] = []

    def run():
        try:  # workers=0: forking data-loader processes from a threaded server is not safe; the CLI uses them
            return scan(model, ds, out, batch_size=int(batch), limit=int(limit), progress=progress, workers=0)
        except ScanBusy as exc:  # the lock is the scan folder's own, shared with the CLI
            busy.append(exc)
            return None

    result = attempt(run, "scanning")
    if busy:
        bar.empty()
        st.info("Another visitor (or a command-line scan) is scanning this dataset with this model right now; its "
                "results appear here as they come.")  # fmt: skip
        return
    _scan_rows.clear()
    if result is not None:
        scanned.metric("Already scanned", f"{result.rows} / {len(ds)}")
        bar.progress(1.0, text=f"Done: {result.rows} images in {time.monotonic() - start:.0f} s "
                     f"({result.images_per_s:.1f} images/s; {result.skipped} unreadable).")  # fmt: skip


def _labels_note(model: LoadedModel, source: DatasetRoot, ds: Dataset, key: str) -> None:
    """When the dataset's labels cannot be matched to the model's classes, say what a scan can and cannot give,
    before anyone starts one; for the shapes world, offer its model."""
    if ds.label_map(model.class_names) is not None:
        return
    st.info(
        f"{ds.name}'s labels cannot be compared with {model.name}'s classes, so a scan records predictions and "
        "confidence but marks nothing right or wrong, and this page will find no mistakes. (ImageNet data needs "
        "an ImageNet model; a folder's class names must match the model's.)"
    )
    if source.name == SHAPES_DATASET and model.name not in SHAPES_MODELS:
        st.button("Switch to shapes_cnn, which knows these classes", key=key,
                  on_click=state.put, args=("model_select", "shapes_cnn"))  # fmt: skip


@st.cache_data(ttl=5, show_spinner=False)
def _scan_rows(out: Path) -> tuple[dict, pd.DataFrame]:
    if not (out / "scan.json").exists():
        return {}, pd.DataFrame(columns=["id", "error", "correct"])
    try:
        return load_scan(out)
    except DatasetError as exc:  # a damaged scan.json: the sentence says what to do
        return {"problem": str(exc)}, pd.DataFrame(columns=["id", "error", "correct"])


# ----------------------------------------------------------------------------------------------------- gallery


@dataclass(frozen=True)
class GalleryFilter:
    min_confidence: float
    true_class: int | None
    pred_class: int | None


def gallery_view(model: LoadedModel, source: DatasetRoot, ds: Dataset) -> None:
    meta, rows = _scan_rows(scan_dir(model, source))
    linked = permalink.take_one("why")  # the mistake a shared link explains
    if linked:
        if not rows.empty and linked in set(rows["path"]):
            st.session_state["_gallery_pick"] = linked
        else:
            permalink.note(f"The link explains {linked}, which this server's scan of {ds.name} by {model.name} does "
                           "not hold; start or resume the scan in the Scan tab.")  # fmt: skip
    for problem in (meta.get("problem"), damaged_note(meta.get("damaged_parts", []))):
        if problem:
            st.warning(problem)
    if rows.empty:
        where = (f" (or on the server: `python -m interp scan --model {model.name} --dataset \"{source.name}\"`, whose "
                 "result appears here)") if source.kind != "zip" and model.weights.kind != "file" else ""
        st.info(f"No scan of {ds.name} by {model.name} yet: start one in the Scan tab{where}.")
        _labels_note(model, source, ds, "gallery_switch_model")  # before anyone spends a scan on it
        return
    check = meta.get("precision_check")
    if meta.get("precision", "fp32") != "fp32":
        agreement = (f"; its top-1 class agrees with fp32 on {check['top1_agreement']:.1%} of the first "
                     f"{check['images']} images" if check and check.get("top1_agreement") is not None
                     else "; its agreement with fp32 is measured when the scan completes")  # fmt: skip
        st.caption(f"Scanned in {meta['precision']}{agreement}.")
    decoded = meta.get("device_decoding")
    if isinstance(decoded, dict) and decoded.get("device", "cpu") != "cpu" and decoded.get("images"):
        n = int(decoded["images"])
        st.caption(f"{counted(n, 'JPEG')} of this scan {'was' if n == 1 else 'were'} decoded on the GPU (nvJPEG, "
                   f"through {decoded.get('decoder') or 'its decoder'}), whose pixels are not quite those the other "
                   "pages decode: a probability here can differ a little from theirs for the same photo (up to 0.02 "
                   "in a test on an H200), and a near tie can tip the other way. A scan from the command line with "
                   "`--decode cpu` gives their pixels.")  # fmt: skip
    s = summary(rows)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Images scanned", s["images"])
    m2.metric("Accuracy", f"{s['accuracy']:.1%}" if s["scored"] else "not scored")
    m3.metric("Mistakes", s["mistakes"])
    m4.metric("Unreadable", s["unreadable"])
    if s["unreadable"]:
        with st.expander(f"Skipped {counted(s['unreadable'], 'file')} that could not be read"):
            st.dataframe(rows.loc[rows["error"].notna(), ["path", "error"]], hide_index=True)
    if not s["scored"]:
        st.info("These labels cannot be compared with the model's classes; the table lists its least confident "
                "predictions instead (high entropy).")  # fmt: skip
        unsure = rows.sort_values("entropy", ascending=False).head(200)[["path", "pred_name", "confidence", "entropy"]]
        st.dataframe(unsure.assign(pred_name=[charts.short_label(x) for x in unsure["pred_name"]]).rename(
            columns={"pred_name": "predicted"}), hide_index=True)  # fmt: skip
        return
    filt = _filters_ui(model, rows)
    wrong = failures(rows, filt.min_confidence, filt.true_class, filt.pred_class)
    left, right = st.columns(2)
    with left:
        st.markdown("**Top confusion pairs**")
        st.dataframe(confusion_table(rows, filt.min_confidence, model.class_names), hide_index=True,
                     column_config={"confidence": st.column_config.NumberColumn("mean confidence", format="%.0f%%")})
    with right:
        st.plotly_chart(_accuracy_chart(per_class_accuracy(rows, model.class_names)), key="gallery_accuracy",
                        config={"displayModeBar": False})  # fmt: skip
    st.markdown(f"**{counted(len(wrong), 'mistake')}** at confidence ≥ {filt.min_confidence:.0%}, most confident "
                "first")
    if wrong.empty:
        return
    # the Concepts page can turn the current selection into a concept set
    st.session_state["_gallery_selection"] = {
        "source": source,
        "paths": list(wrong["path"].head(200)),
        "what": f"{counted(len(wrong), 'mistake')} of {model.name} on {ds.name} at confidence "
                f"≥ {filt.min_confidence:.0%}",
    }
    page = _pager(st, len(wrong), f"gallery_page_{filt}")
    shown = wrong.iloc[page * PER_PAGE : (page + 1) * PER_PAGE]
    many = shown["labels"] if "labels" in shown else [()] * len(shown)
    name_of = class_names_of(rows, model.class_names)
    cells = [(path, f"{charts.short_label(pred)} {conf:.0%} · true {true_names(labels, name, name_of, most=3)}")
             for path, pred, conf, labels, name in zip(shown["path"], shown["pred_name"], shown["confidence"], many,
                                                       shown["label_name"], strict=True)]  # fmt: skip
    _pick_grid(source, cells)
    _exports(source, ds, wrong)
    picked = state.get("_gallery_pick")
    explained = bool(picked) and picked in set(wrong["path"])
    permalink.publish(why=picked if explained else None)
    if explained:
        why_view(model, source, wrong[wrong["path"] == picked].iloc[0])


def _filters_ui(model: LoadedModel, rows: pd.DataFrame) -> GalleryFilter:
    c1, c2, c3 = st.columns(3)
    conf = permalink.linked(c1.slider, "Minimum confidence", 0.0, 1.0, 0.5, 0.05, key="gallery_conf")
    done = rows[rows["correct"].notna()]
    trues = sorted(set(true_labels(done)))  # every label of a multi-label image
    preds = sorted({int(v) for v in done.loc[done["correct"] == False, "pred"].dropna()})
    _classes_by_name(model, {"gallery_true": trues, "gallery_pred": preds})
    name = lambda i: "any" if i is None else charts.short_label(model.class_names[i])
    true_class = permalink.linked(c2.selectbox, "True class", [None, *trues], format_func=name, key="gallery_true")
    pred_class = permalink.linked(c3.selectbox, "Predicted class", [None, *preds], format_func=name, key="gallery_pred",
                                  help="With a true class too, this is one confusion pair.")
    return GalleryFilter(conf, true_class, pred_class)


def _classes_by_name(model: LoadedModel, offered: dict[str, list[int]]) -> None:
    """The *True class* and *Predicted class* boxes (keys of ``offered``, with the classes they offer) hold a class
    index, and on a model with other classes (another model, uploaded weights with their own names) that index is
    another class: the box went from *star* to *triangle* without a word. Keep each chosen class by its name, or go
    back to *any* where the model has no such class or the box does not offer it."""
    names = tuple(model.class_names)
    before = st.session_state.get("_gallery_class_names")
    st.session_state["_gallery_class_names"] = names
    if before is None or before == names:
        return
    for key, classes in offered.items():
        index = st.session_state.get(key)
        if isinstance(index, int) and index < len(before):
            same = names.index(before[index]) if before[index] in names else None
            st.session_state[key] = same if same in classes else None


def confusion_table(rows: pd.DataFrame, min_confidence: float, class_names: Sequence[str] | None = None,
                    n: int = 15) -> pd.DataFrame:  # fmt: skip
    """The most frequent (true, predicted) pairs among the mistakes, named as the thumbnails name them: ImageNet's
    synonyms ("American Staffordshire terrier, Staffordshire terrier, American pit bull terrier, pit bull terrier")
    pushed the count and confidence out of the half-page table."""
    pairs = confusion_pairs(rows, n, min_confidence, class_names)
    return pd.DataFrame({"true": [charts.short_label(x) for x in pairs["label_name"]],
                         "predicted": [charts.short_label(x) for x in pairs["pred_name"]],
                         "count": pairs["count"].to_numpy(),
                         "confidence": 100 * pairs["mean_confidence"].to_numpy()})  # fmt: skip


def _accuracy_chart(table: pd.DataFrame, worst: int = 25) -> go.Figure:
    t = table.head(worst).iloc[::-1]
    # each bar reads its value: inside a long bar, beside a short one (a 0% bar has no inside to write in)
    where = ["inside" if a >= 0.2 else "outside" for a in t["accuracy"]]
    fig = go.Figure(go.Bar(x=t["accuracy"], y=[f"{charts.plot_text(charts.short_label(n))} " for n in t["label_name"]],
                           orientation="h", customdata=t[["images", "correct"]], marker_color="#e45756",
                           texttemplate="%{x:.0%}", textposition=where, cliponaxis=False,
                           hovertemplate="%{y}<br>%{customdata[1]} of %{customdata[0]} right (%{x:.1%})<extra></extra>"))  # fmt: skip
    fig.update_layout(title=dict(text=f"Per-class accuracy (worst {min(worst, len(table))})", font=dict(size=13)),
                      height=300, margin=dict(l=10, r=10, t=30, b=30),
                      xaxis=dict(range=[0, 1.04], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1]))  # fmt: skip
    return fig


def _pick_grid(source: DatasetRoot, cells: list[tuple[str, str]]) -> None:
    for start in range(0, len(cells), COLUMNS):
        for col, (path, caption) in zip(st.columns(COLUMNS), cells[start : start + COLUMNS]):
            with col:
                thumb = resources.dataset_thumbnail(source, path)
                if thumb is not None:
                    st.image(thumb, width="stretch")
                st.caption(caption)
                st.button("Why?", key=f"why_{path}", on_click=_pick, args=(path,), width="stretch",
                          type="primary" if state.get("_gallery_pick") == path else "secondary")  # fmt: skip


@guarded("picking the mistake")
def _pick(path: str) -> None:
    st.session_state["_gallery_pick"] = path


def _exports(source: DatasetRoot, ds: Dataset, wrong: pd.DataFrame) -> None:
    cols = ["id", "path", "label", "label_name", "pred", "pred_name", "confidence", "true_prob", "loss"]
    if several_labels(wrong).any():  # every true class of a multi-label image
        cols.insert(4, "labels")

    def images_zip() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for path in wrong["path"].head(500):
                try:
                    z.write(ds.path_of(path), arcname=path)
                except (OSError, InterpError):
                    continue
        return buf.getvalue()

    c1, c2 = st.columns(2)
    c1.download_button("Selection as CSV", wrong[cols].to_csv(index=False), "failures.csv", "text/csv",
                       key="gallery_csv", on_click="ignore")  # fmt: skip
    c2.download_button("Images as zip (first 500)", images_zip, "failures.zip", "application/zip",
                       key="gallery_zip_dl", on_click="ignore")  # fmt: skip
