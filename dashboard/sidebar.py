"""The sidebar every page shares: pick a model and an image. Widgets only; the values go to session state."""

from __future__ import annotations

import logging

import streamlit as st

import interp
from dashboard import resources, state
from dashboard.feedback import sentence
from interp.errors import InterpError
from interp.images import DEFAULT_MAX_BYTES, UPLOAD_EXTENSIONS
from interp.models import is_timm_name, suggest_names

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
    state.set_query_params(
        model=model.name if model and not model.weights_digest else None,
        image=image.name if image.kind == "sample" else None,
    )
    return model, image


# ----------------------------------------------------------------------------------------------------------- model


def model_picker_ui() -> state.ModelChoice | None:
    rows = {r["name"]: r for r in resources.model_rows()}
    from_url = state.query_param("model")
    if from_url in rows:
        start, typed = from_url, ""
    elif from_url and is_timm_name(from_url):
        start, typed = OTHER, from_url
    else:
        start, typed = interp.DEFAULT_MODEL, ""
    state.restore("model_select", start)
    state.restore("model_other", typed)

    def label(name: str) -> str:
        row = rows.get(name)
        return name if row is None or row["available"] else f"{name} (unavailable here)"

    choice = st.selectbox(
        "Model",
        [*rows, OTHER],
        key="model_select",
        format_func=label,
        on_change=state.keep,
        args=("model_select",),
        help="Models we know well; the last entry takes any name from timm.list_models().",
    )
    if choice == OTHER:
        name = _timm_name_ui()
    else:
        name = choice
        _model_card(rows[name])
    weights = _weights_ui(name)
    if name is None:
        return None
    return state.ModelChoice(name, *weights)


def _timm_name_ui() -> str | None:
    typed = st.text_input(
        "timm model name",
        key="model_other",
        on_change=state.keep,
        args=("model_other",),
        placeholder="e.g. resnet18.a1_in1k",
    ).strip()
    if not typed:
        st.caption("Type any name from `timm.list_models()`; weights come from the hub or a file you upload.")
        return None
    if not is_timm_name(typed):
        close = suggest_names(typed)
        st.error(f"“{typed}” is not a timm model name." + (" Did you mean one of these?" if close else ""))
        for i, suggestion in enumerate(close):
            st.button(suggestion, key=f"suggest_{i}", on_click=state.put, args=("model_other", suggestion))
        return None
    _model_card(resources.model_row(typed))
    return typed


def _model_card(row: dict) -> None:
    st.caption(f"{row['description']} · {row['params'] / 1e6:.1f} M parameters · {row['family'].upper()}")
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


def _take_weights() -> None:
    upload = st.session_state.get("weights_upload")
    if upload is None:
        return
    data = upload.getvalue()
    st.session_state["_weights"] = {"name": upload.name, "digest": resources.digest(data), "data": data}
    st.session_state.pop("_weights_error", None)


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
    from_url = state.query_param("image")
    default = {"kind": "sample", "name": from_url if from_url in interp.SAMPLES else interp.DEFAULT_SAMPLE}
    if "_image" not in st.session_state:
        st.session_state["_image"] = default
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
                st.button(
                    name,
                    key=f"sample_{name}",
                    on_click=_pick_sample,
                    args=(name,),
                    type="primary" if current == {"kind": "sample", "name": name} else "secondary",
                    width="stretch",
                    help=interp.SAMPLES[name].caption,
                )
    return state.ImageChoice(current["kind"], current["name"], current.get("digest"))


def _pick_sample(name: str) -> None:
    st.session_state["_image"] = {"kind": "sample", "name": name}
    st.session_state.pop("_image_error", None)


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
