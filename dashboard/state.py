"""The user's choices, kept in session state so that every page sees the same model and image.

Streamlit forgets a widget's value when the user moves to a page that does not draw it, so each choice is also
kept under a key no widget owns (``_keep_<key>``) and written back before the widget is drawn again. What a link
carries is :mod:`dashboard.permalink`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

NAME_CHARS = 200
"""The longest model name a visitor can type: a Hugging Face repository's owner and name (up to 96 characters each),
with timm's ``hf-hub:`` and a tag. A longer one pasted or carried by a link is still named in a short sentence."""


@dataclass(frozen=True)
class ModelChoice:
    """Which model to load: a name, and optionally uploaded weights (kept in session state by digest)."""

    name: str
    weights_digest: str | None = None
    weights_name: str | None = None
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ImageChoice:
    """Which image to show: a bundled sample by name, an upload by the SHA-256 of its bytes, or an image of a
    dataset by its relative path (``digest`` then holds the dataset's name)."""

    kind: Literal["sample", "upload", "dataset"]
    name: str
    digest: str | None = None


def restore(key: str, default: Any) -> None:
    """Before drawing the widget ``key``: give it the value kept from earlier pages (or ``default``).

    Always written, not only when the key is missing: after a page change the key can still hold the previous
    page's widget state, which Streamlit then drops in favour of the widget's default, so the chosen model flipped
    back to the default on every other page. The kept value is the user's last choice: every change goes through
    :func:`keep` or :func:`put`."""
    store = f"_keep_{key}"
    if store not in st.session_state:
        st.session_state[store] = default
    st.session_state[key] = st.session_state[store]


def keep(key: str) -> None:
    """``on_change`` callback: remember the widget's new value beyond the current page."""
    st.session_state[f"_keep_{key}"] = st.session_state[key]


def put(key: str, value: Any) -> None:
    """Set a widget's value from code (a button, a suggestion) before it is drawn."""
    st.session_state[key] = value
    st.session_state[f"_keep_{key}"] = value


def get(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, default)
