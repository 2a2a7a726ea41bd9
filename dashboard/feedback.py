"""How the app talks about failures: one sentence a person can act on, never a traceback."""

from __future__ import annotations

import errno
import functools
import logging
import sqlite3
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import streamlit as st

from interp.errors import SHOWN_CHARS, InterpError

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
_PENDING = "_callback_error"


def sentence(text: str) -> str:
    """Capitalise an engine message so it reads as a sentence on its own, unless it begins with a name that must keep
    its case: a file (``notes.jpg``), a model (``efficientnet_lite0's``), a path; a first word with anything but
    letters in it."""
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() else text


def quoted(text: object) -> str:
    """What a visitor typed or a link carried, in quotation marks: whole up to ``SHOWN_CHARS`` characters, else its
    start and its length (a pasted name of 5,000 characters filled the sidebar's sentence)."""
    text = str(text)
    if len(text) <= SHOWN_CHARS:
        return f"“{text}”"
    return f"“{text[: SHOWN_CHARS - 20]}…” ({len(text):,} characters)"


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the disk refusing a write: full, over quota or read-only (as the OS or SQLite says it)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("disk is full" in text or "readonly" in text)


def full_disk_sentence(doing: str) -> str:
    return (f"The server's disk is full (or read-only), and {doing} needs to write to it. What the page already "
            "shows stays; whoever runs the app can free space in its cache folder (INTERP_CACHE_DIR) or point that "
            "at a larger disk.")  # fmt: skip


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
    except Exception as exc:
        if disk_full(exc):
            log.exception("the disk refused a write while %s", doing)
            st.error(full_disk_sentence(doing))
            return None
        log.exception("unexpected error while %s", doing)
        st.error(f"Something went wrong while {doing}; the details are in the server log. Try another choice.")
    return None


def guarded(doing: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """Decorate a widget's callback (``on_click``, ``on_change``, ``on_select``) so that a failure inside it becomes
    one sentence instead of Streamlit's exception box, which would replace the whole page.

    A callback runs before the script, where nothing it writes would stay on the page, so the sentence is kept and
    :func:`show_pending` (called by every page's set-up) shows it on the run the callback started.
    """

    def wrap(callback: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(callback)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                callback(*args, **kwargs)
            except InterpError as exc:
                st.session_state[_PENDING] = sentence(str(exc))
            except MemoryError:
                log.exception("out of memory while %s", doing)
                st.session_state[_PENDING] = f"The server ran out of memory while {doing}; try something smaller."
            except Exception as exc:
                if disk_full(exc):
                    log.exception("the disk refused a write while %s", doing)
                    st.session_state[_PENDING] = full_disk_sentence(doing)
                    return
                log.exception("unexpected error while %s", doing)
                st.session_state[_PENDING] = (f"Something went wrong while {doing}; the details are in the server "
                                              "log. Try again, or another choice.")  # fmt: skip

        run.guarded = True  # type: ignore[attr-defined]  (checked by tests/test_callbacks.py)
        return run

    return wrap


def show_pending() -> None:
    """Show the sentence a guarded callback left, once."""
    text = st.session_state.pop(_PENDING, None)
    if text:
        st.error(text)
