"""The Attribution page's method settings: one widget per row of each chosen method's schema, started from the link,
and the values that differ from the defaults published back into it."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import permalink, resources, state
from interp.attribution import METHODS
from interp.attribution.settings import Setting, SettingError, format_assignments, parse_assignments
from interp.models import LoadedModel

_ASKED = "_settings_asked"


def ask(key: str, value: Any) -> None:
    """Set a setting's widget to ``value`` on the next run, before it is drawn (a drawn widget's value cannot be
    changed by code); call ``st.rerun()`` after."""
    st.session_state.setdefault(_ASKED, {})[key] = value


def setting_key(method: str, name: str) -> str:
    return f"attr_set__{method}__{name}"


def settings_ui(model: LoadedModel, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Each chosen method's settings, one widget per row of its schema (a tab per method); the values that differ
    from the defaults go into the link."""
    _settings_from_link(methods)
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    with_settings = [m for m in methods if METHODS[m].schema()]
    if with_settings:
        with st.expander("Method settings"):
            for tab, method in zip(st.tabs([METHODS[m].title for m in with_settings]), with_settings):
                with tab:
                    out[method] = _method_settings_ui(model, method)
    schemas = {m: METHODS[m].schema() for m in methods}
    permalink.publish(set=format_assignments(out, schemas))
    return out


def _method_settings_ui(model: LoadedModel, method: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    cols = st.columns(3)
    drawn = 0
    for row in METHODS[method].schema():
        if row.when is not None and values.get(row.when[0]) != row.when[1]:
            continue  # a wrapped method's setting, for another wrapped method
        with cols[drawn % 3]:
            values[row.name] = _setting_widget(model, method, row)
        drawn += 1
    return values


def _setting_widget(model: LoadedModel, method: str, row: Setting) -> Any:
    key = setting_key(method, row.name)
    state.restore(key, row.default)
    if key in st.session_state.get(_ASKED, {}):  # a value asked for on the last run (Find enough steps)
        state.put(key, st.session_state[_ASKED].pop(key))
    common = {"key": key, "help": row.help or None, "on_change": state.keep, "args": (key,)}
    if row.kind == "layer":
        modules = list(model.layer_names())
        if st.session_state[key] not in modules:  # the default, or a layer of another model
            st.session_state[key] = model.spec.cam_layer if model.spec.cam_layer in modules else modules[0]
        chosen = st.selectbox(row.label, modules, **common)
        # its output under the box, not in its labels: the box is shared by every model, and Streamlit would keep an
        # old label where two models have a layer of the same name (pull request 13788)
        if shape := resources.layer_outputs(model.key, model).get(chosen):
            grid = shape.split(" × ")[1:] if shape.count("×") == 2 else None  # channels × height × width
            st.caption(f"{chosen} gives {shape} for one image" + (f": {' × '.join(grid)} maps, enlarged to the "
                       "input (an earlier layer gives finer ones)" if grid else ""))  # fmt: skip
        return None if chosen == model.spec.cam_layer else chosen
    if row.kind in ("choice", "method"):
        options = list(row.options())
        if st.session_state[key] not in options:
            st.session_state[key] = row.default
        fmt = (lambda n: METHODS[n].title) if row.kind == "method" else str
        return st.selectbox(row.label, options, format_func=fmt, **common)
    number = int if row.kind == "int" else float
    value = number(st.session_state[key])
    high = max(number(row.page_high if row.page_high is not None else row.high), value)  # a linked value beyond it
    st.session_state[key] = value
    step = number(row.step) if row.step is not None else number(1 if row.kind == "int" else 0.01)
    return st.slider(row.label, number(row.low), high, step=step, **common)


def _settings_from_link(methods: list[str]) -> None:
    """The link's ``set=METHOD.SETTING=VALUE`` parameters, as the widgets' starting values."""
    schemas = {m: METHODS[m].schema() for m in methods}
    for item in permalink.take("set"):
        try:
            parsed = parse_assignments([item], methods, schemas, METHODS)
        except SettingError as exc:
            permalink.note(f"The link's setting {item} was not used: {exc}")
            continue
        for method, values in parsed.items():
            for name, value in values.items():
                state.put(setting_key(method, name), value)
