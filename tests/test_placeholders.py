"""An empty choice says what to pick, not Streamlit's generic "Choose options"."""

from __future__ import annotations

import ast

from tests.conftest import ROOT


def _empty_able_choices(path) -> list[ast.Call]:
    """Multiselects (they may be emptied) and selectboxes that start with nothing chosen (``index=None``)."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            kw = {k.arg: k.value for k in node.keywords}
            starts_empty = "index" in kw and isinstance(kw["index"], ast.Constant) and kw["index"].value is None
            if node.func.attr == "multiselect" or (node.func.attr == "selectbox" and starts_empty):
                calls.append(node)
    return calls


def test_every_choice_that_can_be_empty_says_what_to_pick():
    files = sorted((ROOT / "dashboard").glob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    calls = [(p, c) for p in files for c in _empty_able_choices(p)]
    assert len(calls) >= 8  # the scan found them (methods, classes, concepts, layers, photos…)
    bare = [f"{p.name}:{c.lineno}" for p, c in calls
            if not any(k.arg == "placeholder" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                       for k in c.keywords)]  # fmt: skip
    assert not bare, f"these show Streamlit's generic placeholder: {bare}"
