"""The settings schema: each method declares its settings once, as :class:`Setting` rows beside the method.

Everything that offers or stores a setting reads the schema: the page draws a widget per row, the CLI parses
``--set METHOD.SETTING=VALUE`` with it, ``python -m interp methods --json`` lists it, the result cache keys on the
checked values and a permalink carries the values that differ from the defaults. A new method with a new setting is
one class with one more row.

Text form (the CLI's ``--set`` and the permalink's ``set`` parameter)::

    integrated_gradients.steps=64              one setting of one method
    steps=64                                   that setting of every chosen method that has it
    smoothgrad.integrated_gradients.steps=16   a setting of the method SmoothGrad wraps
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from interp.errors import BadSettingError, shown

SettingKind = Literal["int", "float", "choice", "layer", "method"]


class SettingError(BadSettingError):
    """A setting's name or value is not one the method accepts; the message says which values are."""


@dataclass(frozen=True)
class Setting:
    """One setting of a method.

    Attributes:
        name: the key in the method's params (``"steps"``); a wrapped method's settings are ``"<method>.<name>"``.
        kind: ``int`` / ``float`` (a number in ``low..high``), ``choice`` (one of ``choices``), ``layer`` (a module
            name of the model; ``None`` is the model's default layer), ``method`` (a registered method that
            ``choices_of`` allows).
        default: the value used when none is given.
        label: what the page's widget says.
        help: one or two sentences a non-specialist can act on.
        low, high: the accepted range of a number (inclusive).
        step: the page's slider step.
        page_high: the page's slider end when the accepted range is wider than a slider can use well (IG's steps
            run to 1024, the slider to 256; the CLI takes any accepted value).
        choices: the allowed values of a ``choice``.
        choices_of: for ``method`` settings, a function giving the allowed method names (read when asked, so
            methods registered later count).
        when: ``(setting, value)``: the setting matters only when that other setting has that value (a wrapped
            method's settings, only for the method chosen).
    """

    name: str
    kind: SettingKind
    default: Any
    label: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    step: float | None = None
    page_high: float | None = None
    choices: tuple[str, ...] = ()
    choices_of: Callable[[], tuple[str, ...]] | None = None
    when: tuple[str, Any] | None = None

    def options(self) -> tuple[str, ...]:
        """The allowed values of a ``choice`` or ``method`` setting."""
        return self.choices_of() if self.choices_of is not None else self.choices

    def check(self, value: Any, method: str = "") -> Any:
        """``value`` as this setting's type, or :class:`SettingError` saying what is accepted. Text is parsed, so
        the CLI and a permalink hand their strings straight in."""
        who = f"{method}.{self.name}" if method else self.name
        if self.kind in ("int", "float"):
            number = _number(value, self.kind, who)
            if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
                raise SettingError(f"{who} takes {self._range()}, got {value}.")
            return number
        if self.kind == "layer":
            if value is None or (isinstance(value, str) and value.strip().lower() in ("", "default", "none")):
                return None
            return str(value).strip()
        options = self.options()
        text = str(value).strip()
        if text not in options:
            raise SettingError(f"{who} is one of {', '.join(options)}; got {shown(value)}.")
        return text

    def _range(self) -> str:
        kind = "a whole number" if self.kind == "int" else "a number"
        return f"{kind} from {_plain(self.low)} to {_plain(self.high)}"

    def describe(self) -> dict[str, Any]:
        """The row as JSON types, for ``methods --json`` and anyone building a form from it."""
        row: dict[str, Any] = {"name": self.name, "kind": self.kind, "default": self.default, "label": self.label,
                               "help": self.help}  # fmt: skip
        if self.kind in ("int", "float"):
            row.update(low=self.low, high=self.high)
        if self.kind in ("choice", "method"):
            row["choices"] = list(self.options())
        if self.when is not None:
            row["when"] = {"setting": self.when[0], "equals": self.when[1]}
        return row


def _number(value: Any, kind: str, who: str) -> int | float:
    if isinstance(value, bool):
        raise SettingError(f"{who} is a number, got {shown(value)}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{who} is a number, got {shown(value)}.") from None
    if not math.isfinite(number):
        raise SettingError(f"{who} must be finite, got {shown(value)}.")
    if kind == "int":
        if number != int(number):
            raise SettingError(f"{who} is a whole number, got {shown(value)}.")
        return int(number)
    return number


def _plain(x: float | None) -> str:
    return "any" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))


def check_params(name: str, schema: Iterable[Setting], params: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults with ``params`` laid over them, each checked; ``None`` means "the default". Unknown names raise
    :class:`SettingError` naming the method's settings."""
    rows = {s.name: s for s in schema}
    unknown = sorted(set(params) - set(rows))
    if unknown:
        hint = _did_you_mean(unknown[0], rows) if len(unknown) == 1 else ""  # attribute(…, n_steps=64): steps
        raise SettingError(
            f"{name} has no setting {', '.join(unknown)}{hint}; its settings are {', '.join(rows) or 'none'}."
        )
    out = {}
    for key, row in rows.items():
        value = params.get(key)
        out[key] = row.default if value is None else row.check(value, name)
    return out


def relevant(schema: Iterable[Setting], params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the settings whose ``when`` does not hold (a wrapped method's settings for another
    method): what the result depends on, so what the cache keys on."""
    return {s.name: params[s.name] for s in schema
            if s.name in params and (s.when is None or params.get(s.when[0]) == s.when[1])}  # fmt: skip


# ------------------------------------------------------------------------------------------------------ text form


def parse_assignments(
    items: Iterable[str], methods: Iterable[str], schemas: Mapping[str, tuple[Setting, ...]],
    known: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """``["integrated_gradients.steps=64", "window=32"]`` as ``{method: {setting: value}}`` for the chosen
    ``methods``, each value checked against ``schemas[method]``; ``known`` names every registered method, so that
    a setting of one not chosen says so.

    ``METHOD.SETTING=VALUE`` sets one method's setting (``METHOD`` must be among ``methods``); ``SETTING=VALUE``
    sets it on every chosen method that has it (at least one must). Raises :class:`SettingError` with one sentence.
    """
    methods = list(methods)
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingError(f"{shown(item)} is not SETTING=VALUE or METHOD.SETTING=VALUE (e.g. "
                               "integrated_gradients.steps=64).")  # fmt: skip
        head, dot, rest = key.partition(".")
        if dot and (head in schemas or head in known):
            if head not in methods:
                raise SettingError(f"{shown(item)} sets {head}, which is not among the chosen methods "
                                   f"({', '.join(methods)}).")  # fmt: skip
            targets = [(head, rest)]
        else:
            targets = [(m, key) for m in methods if any(s.name == key for s in schemas[m])]
            if not targets:
                names = list(dict.fromkeys(s.name for m in methods for s in schemas[m] if "." not in s.name))
                raise SettingError(f"none of the chosen methods ({', '.join(methods)}) has a setting {shown(key)}"
                                   f"{_did_you_mean(key, names)}; theirs are {', '.join(names) or 'none'} "
                                   "(`python -m interp methods` lists them).")  # fmt: skip
        for method, setting in targets:
            rows = {s.name: s for s in schemas[method]}
            if setting not in rows:
                raise SettingError(f"{method} has no setting {shown(setting)}{_did_you_mean(setting, rows)}; its "
                                   f"settings are {', '.join(rows) or 'none'}.")  # fmt: skip
            out[method][setting] = rows[setting].check(value, method)
    return out


# Captum's (and pytorch-grad-cam's) argument names for what our settings are: someone who knows those types them
CAPTUM_NAMES = {"n_steps": "steps", "nt_samples": "samples", "n_samples": "samples", "stdevs": "noise",
                "sliding_window_shapes": "window", "strides": "stride", "baselines": "baseline",
                "nt_type": "base", "target_layers": "layer", "target_layer": "layer", "n_segments": "superpixels"}


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    names = list(names)
    near = [CAPTUM_NAMES[name]] if CAPTUM_NAMES.get(name) in names else difflib.get_close_matches(name, names, 1, 0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def format_assignments(chosen: Mapping[str, Mapping[str, Any]], schemas: Mapping[str, tuple[Setting, ...]]) -> list[str]:
    """The inverse of :func:`parse_assignments` for the values that differ from the defaults and matter (a permalink
    carries only those), in schema order."""
    out = []
    for method, params in chosen.items():
        for row in schemas.get(method, ()):
            if row.name not in params or params[row.name] == row.default:
                continue
            if row.when is not None and params.get(row.when[0], _default(schemas[method], row.when[0])) != row.when[1]:
                continue
            value = params[row.name]
            out.append(f"{method}.{row.name}={'default' if value is None else _plain(value)}")
    return out


def _default(schema: tuple[Setting, ...], name: str) -> Any:
    return next((s.default for s in schema if s.name == name), None)
