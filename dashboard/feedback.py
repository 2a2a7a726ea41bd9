"""How the app talks about failures: one sentence a person can act on, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from interp.errors import InterpError

log = logging.getLogger(__name__)
T = TypeVar("T")


def sentence(text: str) -> str:
    """Capitalise an engine message so it reads as a sentence on its own."""
    return text[:1].upper() + text[1:] if text else text


def attempt(action: Callable[[], T], doing: str) -> T | None:
    """Run ``action``; on failure show one sentence and return ``None`` so the rest of the page still renders.

    Args:
        action: the work (load a model, decode an image…).
        doing: what the app was doing, for the message about unexpected errors ("loading the model").
    """
    try:
        return action()
    except InterpError as exc:
        st.error(sentence(str(exc)))
    except MemoryError:
        log.exception("out of memory while %s", doing)
        st.error(f"The server ran out of memory while {doing}; pick a smaller model or image.")
    except Exception:
        log.exception("unexpected error while %s", doing)
        st.error(f"Something went wrong while {doing}; the details are in the server log. Try another choice.")
    return None
