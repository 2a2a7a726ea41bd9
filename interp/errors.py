"""Errors the engine raises for input a person can fix.

Each message is one sentence a user can act on: what was wrong and what to do. The dashboard shows it as it is,
the CLI prints it on one line and exits with status 2. Anything else that escapes is a bug in our code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class InterpError(Exception):
    """Base for every error caused by input the user can change (a file, a name, a setting)."""


class BadImageError(InterpError, ValueError):
    """The bytes handed to us are not an image we can use (empty, truncated, not an image, too large)."""


class UnknownModelError(InterpError, ValueError):
    """A model name that is neither in our spec table nor a timm architecture."""


class WeightsMismatchError(InterpError, ValueError):
    """A weights file that does not fit the chosen architecture, or cannot be read safely."""


class WeightsUnavailableError(InterpError, RuntimeError):
    """Weights that cannot be had here: no network and nothing cached, or the bundled package is missing."""


class BadSettingError(InterpError, ValueError):
    """A choice that cannot work as made: too few images for a test, a layer the model lacks, sets that coincide."""


class NotEnoughMemoryError(InterpError, RuntimeError):
    """Work that would not fit in the memory this process may use (a model too large for the server, say).

    Attributes:
        need_mb: what the work would take, headroom included (``None`` where not estimated).
        room_mb: what the process had left when it was refused.
    """

    def __init__(self, message: str, need_mb: float | None = None, room_mb: float | None = None) -> None:
        super().__init__(message)
        self.need_mb, self.room_mb = need_mb, room_mb


def whole_number(value: object) -> int | None:
    """``value`` as an ``int`` where it is an integer of any kind (Python's, NumPy's, a one-element torch tensor's),
    else ``None``: a float, a bool or a string is not read as a number (``2.0`` as an index failed deep inside torch,
    ``True`` counted as 1)."""
    import operator

    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def real_number(value: object) -> float | None:
    """``value`` as a ``float`` where it is a real number of any kind (NumPy's included), else ``None``: a bool or a
    string is not read as a number. NaN stays NaN, which every range check refuses."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch (the CLI's and images' modules do not)."""
    return callable(getattr(value, "detach", None)) and hasattr(value, "dtype")


def as_array(value: object, dtype: object = None) -> np.ndarray:
    """``value`` as a NumPy array (``dtype`` given: of that type). A torch tensor is read as it is: with a gradient,
    on the GPU, in bfloat16 (as float32), where ``np.asarray`` raised torch's "Can't call numpy() on Tensor that
    requires grad", "can't convert cuda:0 device type tensor" or "Got unsupported ScalarType BFloat16"."""
    import numpy as np

    if is_tensor(value):
        value = value.detach().cpu()  # type: ignore[attr-defined]
        value = value.float() if str(value.dtype) == "torch.bfloat16" else value  # NumPy has no bfloat16; others keep
    return np.asarray(value, dtype=dtype)


def at_least(value: object, minimum: int, what: str) -> int:
    """``value`` as a whole number (:func:`whole_number`) no smaller than ``minimum``, or :class:`BadSettingError`
    naming ``what`` (a batch size of 2.5 failed inside ``range()``; a limit of -1 dropped the last image)."""
    number = whole_number(value)
    if number is None:
        raise BadSettingError(f"{what} must be a whole number, got {shown(value)}.")
    if number < minimum:
        raise BadSettingError(f"{what} must be at least {minimum}, got {number}.")
    return number


def name_list(value: object, what: str) -> list[str]:
    """``value`` as a list of names: one string is one name (``layers="bn2"`` iterated as ``b``, ``n``, ``2`` asked
    for a layer ``'b'``), any other collection of strings is its list; anything else is a :class:`BadSettingError`
    naming ``what`` (``layers``, ``methods``)."""
    if isinstance(value, str):
        return [value]
    try:
        items = None if isinstance(value, bytes) else list(value)  # type: ignore[call-overload]
    except TypeError:  # None, a number
        items = None
    if items is None or not all(isinstance(v, str) for v in items):
        raise BadSettingError(f"{what} must be a name or a list of names, got {shown(value)}.")
    return items


def check_class(target: object, count: int, model_name: str, names: Sequence[str] | None = None) -> int:
    """``target`` as a class index of a model with ``count`` classes (:func:`whole_number`) or, given the model's
    class ``names``, a class name or synonym in any case (:func:`class_index`: ``"tiger cat"``, ``"tabby"``), or
    :class:`BadSettingError` saying what is allowed."""
    index = whole_number(target)
    if index is None and isinstance(target, str) and names is not None:
        return class_index(target, names, "target", model_name)
    if index is None:
        raise BadSettingError(f"target must be a class index (a whole number from 0 to {count - 1})"
                              f"{' or a class name' if names is not None else ''}, got {shown(target)}.")  # fmt: skip
    if not 0 <= index < count:
        raise BadSettingError(f"target {index} is not a class of {model_name} (0 to {count - 1}).")
    return index


def class_index(value: str | int, class_names: Sequence[str], option: str, model_name: str) -> int:
    """A class as a person names it (``--target 282``, ``--target "tiger cat"``, ``target="tabby"`` in the API) as
    the index of one of ``class_names``: a whole number in range, or the whole name or one of its comma-separated
    synonyms, in any case. Otherwise one sentence with the range, the closest names, or the classes a name shared by
    several could mean; ``option`` names what was given (``--target``, ``target``)."""
    import difflib

    text = str(value).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise BadSettingError(f"{option} {index} is not a class of {model_name} (0 to {len(class_names) - 1}).")
        return index
    wanted = " ".join(text.lower().split())
    names: dict[str, list[int]] = {}
    for i, name in enumerate(class_names):
        for n in [name, *name.split(",")]:
            held = names.setdefault(" ".join(n.lower().split()), [])
            if i not in held:
                held.append(i)
    if len(names.get(wanted, [])) > 1:  # ImageNet's "crane" is a bird (134) and a machine (517)
        which = " and ".join(f"{i} ({class_names[i]})" for i in names[wanted])
        raise BadSettingError(f"{option} {shown(text)} names {len(names[wanted])} classes of {model_name}, {which}; "
                              "give the index.")  # fmt: skip
    if wanted in names:
        return names[wanted][0]
    close = difflib.get_close_matches(wanted, list(names), 3, 0.75)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "; give an index or an exact name."
    raise BadSettingError(f"{option} {shown(text)} is not a class name of {model_name}{hint}")


_OTHER_KIND = {"TextModel": "a text model, which interp.text's functions read",
              "LoadedModel": "an image model, which interp's image functions read (interp.attention for ViTs)"}


def not_loaded(value: object, what: str, loader: str, wrap: str) -> BadSettingError:
    """The sentence for ``what`` (a function's name) given something other than a model ``loader`` returned: a
    model's name says to load it first, a bare network (anything with a ``state_dict``) how to ``wrap`` it, anything
    else its type (``predict("resnet50", image)`` failed on ``'str' object has no attribute 'preprocess'``)."""
    if isinstance(value, str):  # a long name is named once, by its start and length; the call then says `name`
        call = shown(value) if len(value) <= SHOWN_CHARS else "name"
        given = f"the name {shown(value)}; load it first: model = {loader}({call}), then {what}(model, …)"
    elif callable(getattr(value, "state_dict", None)):
        given = f"a bare network ({type(value).__name__}); {wrap}"
    elif type(value).__name__ in _OTHER_KIND:  # a text model handed to an image function, or the other way round
        given = f"{shown(getattr(value, 'name', 'it'))}, {_OTHER_KIND[type(value).__name__]}"
    else:
        given = f"{shown(value)}; load one with {loader}(name)"
    return BadSettingError(f"{what} takes a model that {loader} returned, not {given}.")


SHOWN_CHARS = 80
"""The longest value a sentence quotes whole (its ``repr``; text as typed). Longer text is quoted to its 60th character
with its length, anything else named by its type (:func:`shown`)."""


def shown(value: object) -> str:
    """``value`` as a sentence names it: its ``repr`` when short (``None``, ``3``, ``'bn2'``, a dataset's entry in the
    settings); the start of long text (``'xxxxxxxx'… (300 characters)``); else (an object without a ``repr`` of its
    own, too) its type, with its shape or length where it has one (``this Tensor of shape (3, 224, 224)``, ``this list
    of 1,000 items``). A value typed or pasted (a name, a link's setting) or handed to the API (an array where a
    number belongs) never fills a message with its contents."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a half-built object whose repr fails is still named by its type
        text = ""
    if isinstance(value, str):
        return text if len(value) <= SHOWN_CHARS else f"{value[: SHOWN_CHARS - 20]!r}… ({len(value):,} characters)"
    if 0 < len(text) <= SHOWN_CHARS and not text.startswith("<"):  # not Python's "<… object at 0x…>"
        return text
    kind = f"this {type(value).__name__}"
    try:
        shape = getattr(value, "shape", None)
        if shape is not None:
            return f"{kind} of shape {tuple(int(n) for n in shape)}"
        return f"{kind} of {len(value):,} items" if isinstance(value, (list, tuple, dict, set, frozenset)) else kind
    except Exception:  # noqa: BLE001 - a shape that is not numbers: the type alone
        return kind


def expected(value: object, kind: type, what: str, maker: str):
    """``value`` when it is a ``kind``, else one sentence: ``what`` (a function) reads what ``maker`` returns
    (``rollout_map(None)`` failed on ``'NoneType' object has no attribute 'attn'``)."""
    if isinstance(value, kind):
        return value
    raise BadSettingError(f"{what} reads what {maker} returns, not {shown(value)}.")


def rows_with(rows: object, columns: Sequence[str], reads: str):
    """``rows`` when they are a pandas DataFrame with ``columns``, else one sentence built on ``reads`` (what the
    function reads: ``"summarise reads the rows load_scores(folder) returns"``), not pandas' ``KeyError`` of the
    first column it reads or ``'list' object has no attribute 'empty'``."""
    import pandas as pd

    from interp.words import joined

    if not isinstance(rows, pd.DataFrame):
        raise BadSettingError(f"{reads}; got {shown(rows)}.")
    missing = [c for c in dict.fromkeys(columns) if c not in rows.columns]
    if missing:
        raise BadSettingError(f"these rows have no {joined(missing)} column{'s' if len(missing) > 1 else ''}: "
                              f"{reads} (all its columns).")  # fmt: skip
    return rows


SEED_LIMIT = 2**63
"""Seeds are below this: NumPy refuses a negative seed ("expected non-negative integer") and torch one past 64 bits
("Overflow when unpacking long"), so a seed both take is from 0 to 2**63 - 1."""


def seed_number(value: object) -> int:
    """``value`` as a seed NumPy's and torch's generators both take (:data:`SEED_LIMIT`), or one sentence."""
    number = whole_number(value)
    if number is None or not 0 <= number < SEED_LIMIT:
        raise BadSettingError(f"seed must be a whole number of 0 or more (below 2**63), got {shown(value)}.")
    return number
