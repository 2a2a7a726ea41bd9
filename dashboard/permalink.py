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
    compare   true when a second model is shown beside the first; second names it (``untrained``: the copy)
    tcav      1 when the Concepts page shows TCAV results: the link runs them as it opens (from the result cache
              when this server has them); the set-up travels as concepts, layers, target and the boxes' values
    spectrum  1 when the Features page shows dataset examples: the link finds them again as it opens

The page is the URL's path. A link is applied once, when a browser session opens it; after that the widgets own the
values and the URL follows them, and moving between pages keeps the model and image (they live in session state).

Two ways into the URL, one rule for choosing: a widget that belongs to one page and that nothing else sets (a tab, the
Attention page's layer and head, the gallery's filters) is bound with Streamlit's ``bind="query-params"`` (drawn by
:func:`linked`, which says when a link's value could not be used): its key is the parameter's name and Streamlit
applies and updates it. Not a tab above long work (the Failures page's scan): a bound tab reruns the page when
clicked, which stops that work. A choice that other pages keep (:mod:`dashboard.state`), that code sets (a clicked
patch, a picked mistake), or whose widget's key changes with the model or image goes through :func:`take` and
:func:`publish`, which also let a page say in the share box what of a link it could not use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlencode

import streamlit as st

from dashboard.feedback import quoted

APPLIED = "_link_applied"
LINK = "_link"
NOTES = "_link_notes"

T = TypeVar("T")


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


def linked(widget: Callable[..., T], label: str, *args: Any, key: str, **kwargs: Any) -> T:
    """Draw ``widget`` (``st.selectbox``, ``c1.slider``…) bound to the URL parameter ``key``, and say once when the
    link that opened it gave a value the widget cannot take (a layer the model does not have, 9999 runs, a word):
    Streamlit then drops the value without a word and the widget opens at its default."""
    given = _linked_value(key)
    value = widget(label, *args, key=key, bind="query-params", **kwargs)
    shown = kwargs.get("format_func", _plain)(value)
    if given is not None and not _same(given, value, shown):
        _dropped(label.strip(), given, _offered(widget, args, kwargs), shown)
    return value


def linked_tabs(labels: list[str], key: str) -> list[Any]:
    """``st.tabs`` bound to the URL parameter ``key`` (a shared link opens the same tab), saying once when the link
    named a tab the page does not have."""
    given = _linked_value(key)
    tabs = st.tabs(labels, key=key, bind="query-params")
    shown = st.session_state.get(key) or labels[0]
    if given is not None and given != shown:
        _dropped("tab", given, f" ({', '.join(labels)})", shown)
    return tabs


def _linked_value(key: str) -> str | None:
    """The URL's value for a bound widget not drawn yet in this session: the one a link brought."""
    return None if key in st.session_state else st.query_params.get(key)


def _dropped(what: str, given: str, offered: str, shown: str) -> None:
    note(f"The link's {what} {quoted(given)} is not one this page offers{offered}; showing {shown}.")


def _offered(widget: Callable[..., Any], args: tuple, kwargs: dict) -> str:
    """What the widget takes, for the sentence: a slider's range, a few choices by name, or a range of choices."""
    if widget.__name__ in ("slider", "number_input"):
        low = args[0] if args else kwargs.get("min_value")
        high = args[1] if len(args) > 1 else kwargs.get("max_value")
        return "" if low is None or high is None else f" (from {_plain(low)} to {_plain(high)})"
    options = args[0] if args else kwargs.get("options", ())
    names = [str(kwargs.get("format_func", str)(o)) for o in options]
    if len(names) <= 6:
        return f" ({', '.join(names)})" if names else ""
    return f" ({names[0]} to {names[-1]})" if isinstance(options, range) else f" (one of {len(names)} choices)"


def _plain(value: Any) -> str:
    """A number as people write it: a whole float without its ``.0`` (a seed drawn as a float widget)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _same(given: str, value: Any, shown: str) -> bool:
    """Whether a URL value is the one the widget shows: its label or value (a choice; the URL holds a value where a
    label is formatted from it), a toggle's ``true``, or its number (a slider's ``0.50``)."""
    if given in (shown, str(value)) or (isinstance(value, bool) and given.lower() == str(value).lower()):
        return True
    try:
        return isinstance(value, int | float) and not isinstance(value, bool) and float(given) == float(value)
    except ValueError:
        return False


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
