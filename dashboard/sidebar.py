"""The sidebar every page shares: pick a model and an image. Widgets only; the values go to session state."""

from __future__ import annotations

import logging

import streamlit as st

import interp
from dashboard import permalink, resources, state
from dashboard.feedback import guarded, quoted, sentence
from interp.errors import InterpError
from interp.images import DEFAULT_MAX_BYTES, UPLOAD_EXTENSIONS
from interp.models import is_timm_name, suggest_names, text_model_note

log = logging.getLogger(__name__)

OTHER = "Another timm model…"
WEIGHT_EXTENSIONS = ("safetensors", "pth", "pt", "bin")
MAX_WEIGHTS_MB = 400
IMAGE_MB = DEFAULT_MAX_BYTES // 2**20


def sidebar_ui() -> tuple[state.ModelChoice | None, state.ImageChoice]:
    """Draw the pickers; return the chosen model (``None`` until a valid name is typed) and image."""
    with st.sidebar:
        model = model_picker_ui()
        st.divider()
        image = image_picker_ui()
    unshared = []
    if model is not None and model.weights_digest:
        unshared.append(f"Your uploaded weights ({model.weights_name}) cannot travel in a link: it names the "
                        "architecture, with its own weights.")  # fmt: skip
    source = state.get("_image", {}).get("source")
    shareable_item = image.kind == "dataset" and source is not None and source in _configured()
    if image.kind == "upload" or (image.kind == "dataset" and not shareable_item):
        unshared.append("Your uploaded image cannot travel in a link: it opens with the default sample instead.")
    st.session_state["_unshared"] = unshared
    permalink.publish(
        model=model.name if model else None,
        image=image.name if image.kind == "sample" else None,
        dataset=source.name if shareable_item else None,
        item=image.name if shareable_item else None,
    )
    return model, image


# ----------------------------------------------------------------------------------------------------------- model


def model_picker_ui() -> state.ModelChoice | None:
    choices = resources.model_choices()
    from_url = permalink.take_one("model")
    if from_url in choices:
        state.put("model_select", from_url)
    elif from_url and is_timm_name(from_url):
        state.put("model_select", OTHER)
        state.put("model_other", from_url)
    elif from_url and (note := text_model_note(from_url)):
        permalink.note(f"The link's model: {note} Showing the default model.")
    elif from_url:
        close = suggest_names(from_url, n=1)
        guess = f" (did you mean {close[0]}?)" if close else ""
        permalink.note(f"The link's model {quoted(from_url)} is not a timm model name{guess}; showing the default "
                       "model.")  # fmt: skip
    state.restore("model_select", interp.DEFAULT_MODEL)
    state.restore("model_other", "")

    def label(name: str) -> str:
        return name if choices.get(name, True) else f"{name} (unavailable here)"

    choice = st.selectbox(
        "Model",
        [*choices, OTHER],
        key="model_select",
        format_func=label,
        on_change=state.keep,
        args=("model_select",),
        help="Models we know well; the last entry takes any timm model name.",
    )
    if choice == OTHER:
        name = _timm_name_ui(choices)
    else:
        name = choice
        _model_card(resources.model_row(name))
    weights = _weights_ui(name)
    if name is None:
        return None
    return state.ModelChoice(name, *weights)


def _timm_name_ui(ours: dict[str, bool]) -> str | None:
    typed = st.text_input(
        "timm model name",
        key="model_other",
        on_change=state.keep,
        args=("model_other",),
        placeholder="e.g. resnet18.a1_in1k",
        max_chars=state.NAME_CHARS,
    ).strip()
    if not typed:
        st.caption("Type any timm model name, or a part of one (vit, convnext, resnet…) to see names that "
                   "contain it; weights come from the hub or a file you upload.")  # fmt: skip
        return None
    if typed not in ours and (note := text_model_note(typed)):
        st.info(note)
        st.page_link("pages/6_Text.py", label="Open the Text page", icon="➡️")
        return None
    if typed not in ours and not is_timm_name(typed):
        close = suggest_names(typed, n=5)
        if typed.lower() not in close and any(typed.lower() in suggestion for suggestion in close):
            st.info(f"{quoted(typed)} is not a whole model name; names that contain it (type more to narrow them):")
        elif close:
            st.error(f"{quoted(typed)} is not a timm model name. Did you mean one of these?")
        else:
            st.error(f"{quoted(typed)} is not a timm model name, nor a part of one; try vit, resnet or convnext.")
        for i, suggestion in enumerate(close):
            st.button(suggestion, key=f"suggest_{i}", on_click=state.put, args=("model_other", suggestion))
        return None
    _model_card(resources.model_row(typed))
    return typed


def _model_card(row: dict) -> None:
    st.caption(f"{row['description']} · {row['params'] / 1e6:.1f} M parameters, about {row['load_mb']:,} MB to load · "
               f"{row['family'].upper()}")  # fmt: skip
    if row["available"]:
        st.caption(f"Weights: {row['weights']}")
    else:
        st.caption(f"Weights: {row['weights']}, unavailable here: {row['reason']}")


def _weights_ui(name: str | None) -> tuple[str | None, str | None, tuple[str, ...] | None]:
    """Optional uploaded weights (and class names) for the chosen architecture; kept across pages."""
    current = state.get("_weights")
    with st.expander("Your own weights", expanded=current is not None):
        st.file_uploader(
            "Weights file for this architecture",
            type=WEIGHT_EXTENSIONS,
            key="weights_upload",
            on_change=_take_weights,
            max_upload_size=MAX_WEIGHTS_MB,
            help="A .safetensors file, or a .pth/.pt state dict (loaded with weights_only=True; "
            "other pickled objects are refused). A classifier of another size is detected.",
        )
        st.file_uploader(
            "Class names (optional, one per line)", type=["txt"], key="classes_upload", on_change=_take_classes
        )
        if state.get("_weights_error"):
            st.error(state.get("_weights_error"))
        if current:
            st.caption(f"Using {current['name']} ({len(current['data']) / 2**20:.1f} MB) on {name or 'the model'}.")
            st.button("Use the model's own weights", key="weights_clear", on_click=_clear_weights)
    if not current:
        return None, None, None
    return current["digest"], current["name"], state.get("_classes")


@guarded("reading the weights file")
def _take_weights() -> None:
    upload = st.session_state.get("weights_upload")
    if upload is None:
        return
    data = upload.getvalue()
    st.session_state["_weights"] = {"name": upload.name, "digest": resources.digest(data), "data": data}
    st.session_state.pop("_weights_error", None)


@guarded("reading the class names")
def _take_classes() -> None:
    upload = st.session_state.get("classes_upload")
    if upload is None:
        st.session_state.pop("_classes", None)
        return
    try:
        names = [line.strip() for line in upload.getvalue().decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        st.session_state["_weights_error"] = f"{upload.name} is not UTF-8 text; save it as plain text, one name a line."
        return
    st.session_state["_classes"] = tuple(names) or None


@guarded("going back to the model's own weights")
def _clear_weights() -> None:
    for key in ("_weights", "_classes", "_weights_error"):
        st.session_state.pop(key, None)


def weights_bytes(choice: state.ModelChoice) -> bytes | None:
    current = state.get("_weights")
    if choice.weights_digest and current and current["digest"] == choice.weights_digest:
        return current["data"]
    return None


# ----------------------------------------------------------------------------------------------------------- image


def image_picker_ui() -> state.ImageChoice:
    from_url, dataset, item = permalink.take_one("image"), permalink.take_one("dataset"), permalink.take_one("item")
    if from_url in interp.SAMPLES:
        st.session_state["_image"] = {"kind": "sample", "name": from_url}
    elif dataset and item:
        st.session_state["_image"] = _dataset_image_from_link(dataset, item) or state.get("_image")
    elif from_url:
        permalink.note(f"The link's image {quoted(from_url)} is not one of the bundled samples; showing the default.")
    if not st.session_state.get("_image"):
        st.session_state["_image"] = {"kind": "sample", "name": interp.DEFAULT_SAMPLE}
    current = st.session_state["_image"]

    st.markdown("**Image**")
    st.file_uploader(
        f"Upload an image (JPEG, PNG, WebP, BMP, TIFF, GIF; up to {IMAGE_MB} MB)",
        type=list(UPLOAD_EXTENSIONS),
        key="image_upload",
        on_change=_take_image,
        max_upload_size=IMAGE_MB,
    )
    if state.get("_image_error"):
        st.error(state.get("_image_error"))
    if current["kind"] == "dataset":
        st.caption(f"From {current['digest']}: {current['name']}")
    with st.expander("Sample photos", expanded=current["kind"] == "sample"):
        cols = st.columns(2, gap="small")
        for i, name in enumerate(interp.SAMPLES):
            with cols[i % 2]:
                st.image(resources.sample_thumbnail(name), width="stretch")
                label = sample_label(name)
                caption = interp.SAMPLES[name].caption
                st.button(
                    label,
                    key=f"sample_{name}",
                    on_click=_pick_sample,
                    args=(name,),
                    type="primary" if current == {"kind": "sample", "name": name} else "secondary",
                    width="stretch",
                    help=caption if label == name else f"{caption} (in links and the CLI: {name})",
                )
    return state.ImageChoice(current["kind"], current["name"], current.get("digest"))


def sample_label(name: str) -> str:
    """A sample's button label: its name, without the shapes world's prefix, which the thumbnail shows (two
    "shapes_…" names were cut to the same "shapes_s…" at the sidebar's width)."""
    return name.removeprefix("shapes_")


def _configured() -> list:
    """The datasets configured on this server (not a visitor's zips): those a link can name."""
    try:
        return list(resources.dataset_roots())
    except InterpError:
        return []


@guarded("opening the image on the other pages")
def send_to_pages(source, relpath: str) -> None:
    """Make an image of the dataset ``source`` (a :class:`~interp.datasets.DatasetRoot`) the image every page
    shows."""
    st.session_state["_image"] = {"kind": "dataset", "name": relpath, "digest": source.name, "source": source}


def _dataset_image_from_link(dataset: str, item: str) -> dict | None:
    """The sidebar's image for a link's ``dataset`` and ``item``, when that dataset is configured on this server and
    holds that image; else a note and ``None``."""
    root = {r.name: r for r in _configured()}.get(dataset)
    if root is None:
        permalink.note(f"The link's dataset {quoted(dataset)} is not configured on this server; showing the default "
                       "sample.")  # fmt: skip
        return None
    try:
        resources.dataset_image(root, item)
    except InterpError as exc:
        permalink.note(f"The link's image {item} could not be opened from {dataset}: {sentence(str(exc))}")
        return None
    return {"kind": "dataset", "name": item, "digest": root.name, "source": root}


@guarded("opening the sample")
def _pick_sample(name: str) -> None:
    st.session_state["_image"] = {"kind": "sample", "name": name}
    st.session_state.pop("_image_error", None)


@guarded("reading the image")
def _take_image() -> None:
    """Check an upload at once: a bad file gets a sentence and the previous image stays chosen."""
    upload = st.session_state.get("image_upload")
    if upload is None:
        return
    data = upload.getvalue()
    digest = resources.digest(data)
    try:
        resources.uploaded_image(digest, upload.name, data)
    except InterpError as exc:
        st.session_state["_image_error"] = sentence(str(exc))
        return
    except Exception:
        log.exception("unexpected error decoding upload %s", upload.name)
        st.session_state["_image_error"] = f"{upload.name} could not be read; try saving it again as PNG or JPEG."
        return
    st.session_state["_uploads"] = {digest: data}  # only the latest upload is kept, to bound memory
    st.session_state["_image"] = {"kind": "upload", "name": upload.name, "digest": digest}
    st.session_state.pop("_image_error", None)


def image_bytes(choice: state.ImageChoice) -> bytes | None:
    return state.get("_uploads", {}).get(choice.digest)
