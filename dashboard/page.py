"""What every page does first."""

from __future__ import annotations

import logging

import streamlit as st

PAGES: tuple[tuple[str, str], ...] = (
    ("Home", "pick a model and an image in the sidebar; see the image as the model sees it and its top-5 classes."),
)
"""(page title, what a user does there), listed on the home page. A new page adds its row."""


def page_setup(title: str) -> None:
    st.set_page_config(page_title=f"{title} · Interp", page_icon="🔎", layout="wide")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
