"""What every page does first."""

from __future__ import annotations

import logging
from typing import NoReturn

import streamlit as st

from dashboard import permalink, resources
from dashboard.feedback import show_pending
from interp.errors import InterpError

PAGES: tuple[tuple[str, str, str], ...] = (
    (
        "streamlit_app.py",
        "Home",
        "pick a model and an image in the sidebar; see the image as the model sees it and its top-5 classes.",
    ),
    (
        "pages/1_Attribution.py",
        "Attribution",
        "compare attribution methods side by side (gradients, Integrated Gradients, SmoothGrad, DeepLIFT, SHAP, "
        "occlusion, LIME, the Grad-CAM family…) for several target classes, each map with a trust score against "
        "random maps (deletion and insertion) and Integrated Gradients checked to add up (one click finds enough "
        "steps); download the grid and the raw maps.",
    ),
    (
        "pages/2_Attention.py",
        "Attention",
        "a vision transformer's attention: every layer and head over the image, rollout, class-specific relevance "
        "(gradient rollout, Chefer et al.), where a clicked patch looks, the token matrix, and per-head statistics "
        "(click a head to see its maps).",
    ),
    (
        "pages/3_Failures.py",
        "Failures",
        "scan a dataset (ImageNet validation, Open Images, a folder, a zip, the shapes world) and browse the "
        "model's most confident mistakes, with the confusion pairs, per-class accuracy and why each mistake was made; "
        "and which attribution method to trust on that dataset.",
    ),
    (
        "pages/4_Concepts.py",
        "Concepts",
        "build concept sets (textures, the shapes world's marker, your photos or a dataset class), train CAVs and "
        "run TCAV against random concepts, with p-values and the images most aligned with each concept.",
    ),
    (
        "pages/5_Features.py",
        "Features",
        "what a unit looks for: the first filters, an image's feature maps, the image that drives a channel, neuron "
        "or class hardest (activation maximisation, pixels and Fourier side by side) and dataset examples across "
        "the unit's spectrum.",
    ),
    (
        "pages/6_Text.py",
        "Text",
        "a BERT-like text model's attention: every head of every layer over the tokens, attention from a chosen "
        "token, rollout, what each head does (previous token, to [CLS]/[SEP]…), and Integrated Gradients per word.",
    ),
)
"""(script, title, what a user does there): the sidebar navigation and the home page's list. A new page adds its row."""


def page_setup(title: str) -> None:
    st.set_page_config(page_title=f"{title} · Interp", page_icon="🔎", layout="wide")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with st.sidebar:
        for script, name, _ in PAGES:
            st.page_link(script, label=name)
        st.divider()
    try:
        resources.settings()
    except (InterpError, ValueError) as exc:  # the environment's INTERP_* settings: whoever runs the app fixes them
        st.error(f"This app cannot start as it is set up: {exc} Then restart it.")
        st.stop()
    show_pending()


def stop() -> NoReturn:
    """End the page here, still drawing the sidebar's share box: what of an opened link could not be used is said
    also on a page that cannot go on (a CNN on the Attention page after a link's mistyped ViT name)."""
    permalink.share_ui()
    st.stop()
