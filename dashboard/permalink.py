"""Links that reproduce a view: what a page shows is mirrored in the URL's query parameters, and a link opened in a
fresh browser session sets the same choices before anything is drawn.

The encoding (plain query parameters, each left out when it holds its default)::

    /Attribution?model=resnet50&image=chelsea&methods=grad_cam,integrated_gradients&targets=281,285
        &set=integrated_gradients.steps%3D64&set=occlusion.window%3D48&alpha=0.7&cmap=viridis

    model     the model's name (uploaded weights cannot travel in a link: the link then names the architecture)
    image     a bundled sample by name; or dataset=<configured dataset name>&item=<image id>; an upload cannot
              travel (the share box says so)
    methods   the Attribution page's methods, comma-separated; targets its class indices
    set       METHOD.SETTING=VALUE, once per setting that differs from its default (the CLI's --set syntax)
    alpha, cmap, sign, clip, agg   the display options
    scores    1 when the trust scores are on; score_steps, score_block, score_with their settings
    tcav      1 when the Concepts page shows TCAV results: the link runs them as it opens (from the result cache
              when this server has them); the set-up travels as concepts, layers, target and the boxes' values
    spectrum  1 when the Features page shows dataset examples: the link finds them again as it opens

The page is the URL's path. A link is applied once, when a browser session opens it; after that the widgets own the
values and the URL follows them, and moving between pages keeps the model and image (they live in session state).

Two ways into the URL, one rule for choosing: a widget that belongs to one page and that nothing else sets (a tab, the
Attention page's layer and head, the gallery's filters) is bound with Streamlit's ``bind="query-params"``: its key is
the parameter's name and Streamlit applies and updates it. Not a tab above long work (the Failures page's scan): a
bound tab reruns the page when clicked, which stops that work. A choice that other pages keep (:mod:`dashboard.state`),
that code sets (a clicked patch, a picked mistake), or whose widget's key changes with the model or image goes through
:func:`take` and :func:`publish`, which also let a page say in the share box what of a link it could not use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import streamlit as st

APPLIED = "_link_applied"
LINK = "_link"
NOTES = "_link_notes"


def take(name: str) -> list[str]:
    """The values of ``name`` in the link that opened this browser session, once: a part of the link is used by
    the widget it belongs to when that widget is first drawn, then the widget owns the value."""
    if not st.session_state.get(APPLIED):
        st.session_state[APPLIED] = True
        st.session_state[LINK] = {name: st.query_params.get_all(name) for name in st.query_params}
    return [v for v in st.session_state[LINK].pop(name, []) if v]


def take_one(name: str) -> str | None:
    values = take(name)
    return values[0] if values else None


def take_class(name: str, num_classes: int, model_name: str) -> int | None:
    """The class index the link gives under ``name``, once; one the model does not have is noted and ``None``."""
    linked = take_one(name)
    if linked is not None and linked.isdigit() and int(linked) < num_classes:
        return int(linked)
    if linked is not None:
        note(f"The link's class {linked} is not a class of {model_name}; showing the predicted class.")
    return None


def note(text: str) -> None:
    """Say a sentence about a part of the link that could not be used where the visitor looks, at once (a
    notification at the top right, kept until it is closed, not after the page's long work), and keep it for the
    share box far down the sidebar (:func:`share_ui`)."""
    st.session_state.setdefault(NOTES, []).append(text)
    st.toast(text, icon=":material/link_off:", duration="infinite")


def split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def publish(**values: str | Iterable[str] | None) -> None:
    """Mirror a page's choices in the URL; ``None`` (the default value) removes a parameter."""
    for name, value in values.items():
        if value is None or value == [] or value == "":
            st.query_params.pop(name, None)
            continue
        value = value if isinstance(value, str) else list(value)
        if (st.query_params.get_all(name) if isinstance(value, list) else st.query_params.get(name)) != value:
            st.query_params[name] = value


def current_link() -> str | None:
    """The link to this view as the browser shows it, or ``None`` when the app's address is not known."""
    base = getattr(st.context, "url", None)
    if not base:
        return None
    query = urlencode([(k, v) for k in st.query_params for v in st.query_params.get_all(k)])
    return f"{base.split('?', 1)[0]}?{query}" if query else base


def share_ui() -> None:
    """The sidebar's share box, drawn last (when the page has put all its choices in the URL): the link to copy,
    what it cannot carry, and what of an opened link could not be used."""
    unshared = st.session_state.get("_unshared", [])
    with st.sidebar.expander("Share this view", expanded=bool(st.session_state.get(NOTES))):
        link = current_link()
        if link:
            st.code(link, language=None, wrap_lines=True)
            st.caption("Copy this link (or the address bar): it opens this page with the same model, image and "
                       "choices.")  # fmt: skip
        for text in unshared:
            st.caption(text)
        for text in st.session_state.get(NOTES, []):
            st.warning(text)


def encode_number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
