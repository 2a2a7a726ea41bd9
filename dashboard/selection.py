"""Turn the sidebar's choices into a loaded model and image, or a sentence saying why not."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from dashboard import resources, sidebar
from dashboard.feedback import attempt
from dashboard.state import ImageChoice, ModelChoice
from interp.errors import InterpError
from interp.images import LoadedImage
from interp.models import LoadedModel, availability

T = TypeVar("T")


def selection_ui() -> tuple[LoadedModel | None, LoadedImage | None]:
    """Draw the shared sidebar and load what it names. Either value is ``None`` when it cannot be had."""
    model_choice, image_choice = sidebar.sidebar_ui()
    return load_model(model_choice), load_image(image_choice)


def load_model(choice: ModelChoice | None) -> LoadedModel | None:
    if choice is None:
        st.info("Pick a model in the sidebar, or type a timm model name.")
        return None
    weights = sidebar.weights_bytes(choice)
    model = loading(
        choice.name,
        lambda: resources.model(choice.name, choice.weights_digest, choice.weights_name, choice.class_names, weights),
        download_notice(choice.name) if weights is None else None,
    )
    if model is None and weights is not None:  # the sentence above may be about the upload: the way back to the model
        st.caption(f"This used your weights file {choice.weights_name}: *Use the model's own weights* under *Your own "
                   f"weights* in the sidebar goes back to {choice.name} as it comes.")  # fmt: skip
    return model


def loading(name: str, load: Callable[[], T], notice: str | None) -> T | None:
    """``load`` the model ``name`` (a sentence when it cannot be had), showing ``notice`` while it runs: that its
    weights are first downloaded from the hub, a minute or more for a large model, where a spinner alone looks
    stuck."""
    shown = st.empty()
    if notice:
        shown.info(notice)
    try:
        return attempt(load, f"loading {name}")
    finally:
        shown.empty()


def download_notice(name: str) -> str | None:
    """What loading the image model ``name`` with its own weights downloads first, or ``None`` when nothing."""
    mb = download_mb(name)
    if mb is None:
        return None
    return (f"Downloading {name}'s weights from the Hugging Face hub (about {mb:,} MB). This happens once on this "
            "server; the next visitor's load reads them from its disk.")  # fmt: skip


def download_mb(name: str) -> int | None:
    """About how many MB loading ``name`` with its own weights downloads first (float32 weights), or ``None`` when it
    downloads nothing (bundled weights, the local hub cache) or cannot be had (the load then says why)."""
    try:
        row = resources.model_row(name)
        if not str(row["weights"]).startswith("download from the hub"):
            return None
        if not availability(name).source.startswith("download from the hub"):  # the row is a minute old: downloaded
            return None
    except (InterpError, ValueError):
        return None
    return max(1, round(row["params"] * 4 / 2**20))


def load_image(choice: ImageChoice) -> LoadedImage | None:
    if choice.kind == "sample":
        return attempt(lambda: resources.sample_image(choice.name), f"loading the sample {choice.name}")
    if choice.kind == "dataset":
        source = st.session_state.get("_image", {}).get("source")
        if not source:
            st.info("Pick the image again in the Failures page's dataset browser, or pick a sample.")
            return None
        return attempt(lambda: resources.dataset_image(source, choice.name), f"reading {choice.name}")
    data = sidebar.image_bytes(choice)
    if data is None:
        st.info("The uploaded image is no longer held by this session; upload it again or pick a sample.")
        return None
    return attempt(lambda: resources.uploaded_image(choice.digest, choice.name, data), f"reading {choice.name}")
