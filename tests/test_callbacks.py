"""A failure inside a widget's callback is one sentence on the page, never Streamlit's exception box."""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state

ROOT = Path(__file__).resolve().parents[1]
CALLBACK_ARGS = {"on_click", "on_change", "on_select"}
PLAIN = {state.keep, state.put}  # they only copy a value between two keys of the session state


def _callbacks(path: Path) -> list[tuple[int, ast.expr]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            found += [(node.lineno, kw.value) for kw in node.keywords
                      if kw.arg in CALLBACK_ARGS and not isinstance(kw.value, ast.Constant)]  # "ignore": no callback
    return found


def _resolve(module, expr: ast.expr):
    if isinstance(expr, ast.Call):  # functools.partial(callback, ...)
        assert ast.unparse(expr.func) == "functools.partial", ast.unparse(expr)
        return _resolve(module, expr.args[0])
    return functools.reduce(getattr, ast.unparse(expr).split("."), module)


def test_every_callback_in_the_dashboard_is_guarded_or_only_copies_a_value():
    files = sorted((ROOT / "dashboard").glob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    seen, unguarded = 0, []
    for path in files:
        if path.parent.name == "pages":
            continue  # pages run on import; they hold no callbacks of their own (checked below)
        module = importlib.import_module(f"dashboard.{path.stem}")
        for line, expr in _callbacks(path):
            seen += 1
            fn = _resolve(module, expr)
            if fn not in PLAIN and not getattr(fn, "guarded", False):
                unguarded.append(f"{path.name}:{line} {ast.unparse(expr)}")
    assert seen >= 30  # the scan found the callbacks (there are about 40)
    assert not unguarded, unguarded
    assert not any(_callbacks(p) for p in (ROOT / "pages").glob("*.py"))


def test_every_download_button_leaves_the_page_as_it_is():
    """A download that reruns the page races its own file: a button whose file is made on click (a callable) gets a
    new id on every run, and a click that reaches the server after the rerun drew the button again finds no file
    (Streamlit's media file manager drops the old id), so nothing downloads. `on_click="ignore"` runs nothing."""
    files = sorted((ROOT / "dashboard").glob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    calls = [(path.name, node) for path in files for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("download_button")]  # fmt: skip
    assert len(calls) >= 15, len(calls)  # the scan found them (16 when written)
    rerun = [f"{name}:{node.lineno}" for name, node in calls
             if not any(kw.arg == "on_click" and getattr(kw.value, "value", None) == "ignore" for kw in node.keywords)]
    assert not rerun, rerun

def _script() -> None:
    import streamlit as st

    from dashboard.feedback import guarded, show_pending
    from interp.errors import InterpError

    show_pending()

    import errno
    import sqlite3

    from dashboard.feedback import attempt

    failures = {"ours": InterpError("that file is not an image."), "bug": RuntimeError("a bug"),
                "full": OSError(errno.ENOSPC, "No space left on device"),
                "sqlite": sqlite3.OperationalError("database or disk is full")}  # fmt: skip

    def fail(kind: str) -> None:
        raise failures[kind]

    @guarded("testing the button")
    def boom(kind: str) -> None:
        st.session_state["touched"] = st.session_state.get("touched", 0) + 1
        fail(kind)

    for kind in failures:
        st.button(kind, on_click=boom, args=(kind,))
    if st.checkbox("write on the page"):
        attempt(lambda: fail("full"), "saving the scan")
    st.write("the rest of the page")


FULL = ("The server's disk is full (or read-only), and {} needs to write to it. What the page already shows "
        "stays; whoever runs the app can free space in its cache folder (INTERP_CACHE_DIR) or point that at a larger "
        "disk.")


@pytest.mark.parametrize("button, sentence", [
    (0, "That file is not an image."),
    (1, "Something went wrong while testing the button; the details are in the server log. Try again, or another "
        "choice."),
    (2, FULL.format("testing the button")),
    (3, FULL.format("testing the button")),
])  # fmt: skip
def test_a_failing_callback_leaves_one_sentence_and_the_page_runs_on(button, sentence):
    at = AppTest.from_function(_script, default_timeout=30).run()
    at.button[button].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [sentence]
    assert at.session_state["touched"] == 1 and "the rest of the page" in [m.value for m in at.markdown]
    at.run()  # shown once: the next run is clean
    assert not at.error


def test_a_full_disk_on_the_page_is_one_sentence_too():
    at = AppTest.from_function(_script, default_timeout=30).run()
    at.checkbox[0].check().run()
    assert not at.exception and [e.value for e in at.error] == [FULL.format("saving the scan")]
    assert "the rest of the page" in [m.value for m in at.markdown]


@pytest.mark.parametrize("message, shown", [
    ("block must be 1 to 224 pixels.", "Block must be 1 to 224 pixels."),
    ("notes.jpg is not an image we can read.", "notes.jpg is not an image we can read."),
    ("efficientnet_lite0's net was used.", "efficientnet_lite0's net was used."),
    ("world/star.png is damaged.", "world/star.png is damaged."),
    ("", ""),
])  # fmt: skip
def test_a_sentence_is_capitalised_unless_it_begins_with_a_name(message, shown):
    from dashboard.feedback import sentence

    assert sentence(message) == shown


def test_counts_read_in_the_right_number():
    from interp.words import counted

    assert [counted(n, "entry", "entries") for n in (0, 1, 2)] == ["0 entries", "1 entry", "2 entries"]
    assert counted(1, "unreadable image") == "1 unreadable image" and counted(1200, "file") == "1,200 files"
