"""The attribution contract: one result type, one base class, one registry.

Every method answers ``method.attribute(model, x, target) -> Attribution``. The base class owns what every method
needs done right: it holds the model's gate alone (the model is shared by every session; :mod:`interp.models.gate`),
checks that no hook is left behind, times the call and packs the result. A method implements
``_attribute`` and nothing else.
"""

from __future__ import annotations

import difflib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from interp.attribution.settings import Setting, check_params, relevant
from interp.errors import BadSettingError, InterpError, check_class, name_list, shown
from interp.models import LoadedModel

Kind = Literal["gradient", "perturbation", "cam"]
COMPLETENESS_TOLERANCE = 0.05  # a path method's relative completeness error above which its map is flagged


class MethodNotApplicable(InterpError, ValueError):
    """The method cannot explain this model (e.g. Guided Backprop on a model with no ReLU)."""


class MapNotFinite(InterpError, ValueError):
    """The method ran but its map holds NaN or infinite values (a gradient of 0 × ∞ through a square root, say)."""


@dataclass(frozen=True)
class Attribution:
    """One attribution map for one image, one target class, one method.

    Attributes:
        method: registry name (``"integrated_gradients"``).
        target: the class index explained.
        raw: ``(C, H, W)`` float32 at the model's input resolution; CAM methods give ``C = 1``.
        params: every setting that produced it (steps, baseline, layer…).
        seconds: wall time of the computation.
        delta: for path methods, the completeness error ``sum(raw) - (f(x) - f(baseline))`` in logits.
        extras: anything else worth showing (``{"logit_gap": ...}``), JSON types only.
    """

    method: str
    target: int
    raw: np.ndarray
    params: dict[str, Any]
    seconds: float
    delta: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def map(self) -> np.ndarray:
        """``(H, W)`` signed map: the sum over channels."""
        return self.raw.sum(axis=0)

    @property
    def incomplete(self) -> bool:
        """Whether a path method's map misses its score change by more than :data:`COMPLETENESS_TOLERANCE`."""
        return self.extras.get("relative_delta", 0.0) > COMPLETENESS_TOLERANCE

    def completeness(self) -> str | None:
        """The completeness error against the score change it is read against, as the page and the CLI say it
        (``"completeness error +0.726 (1.6% of the 45.20 logit change)"``), flagged above the tolerance; ``None``
        for methods without one."""
        if self.delta is None or "relative_delta" not in self.extras:
            return None
        text = (f"completeness error {self.delta:+.3f} ({self.extras['relative_delta']:.1%} of the "
                f"{self.extras['logit_gap']:.2f} logit change)")  # fmt: skip
        advice = getattr(METHODS.get(self.method), "incomplete_advice", AttributionMethod.incomplete_advice)
        return text + (f" ⚠ above {COMPLETENESS_TOLERANCE:.0%}: {advice}" if self.incomplete else "")


class AttributionMethod(ABC):
    """Base of every method. Subclasses set the class attributes and implement :meth:`_attribute`.

    Args:
        **params: values of the method's settings (:meth:`schema`), checked against it: an unknown name or a value
            out of range raises :class:`~interp.attribution.settings.SettingError` (a ``BadSettingError``) saying what
            is accepted; text is parsed (``steps="64"``), ``None`` means the default.

    Class attributes:
        name: registry key; title: what the UI shows; summary: one line for a non-specialist;
        paper: the paper it implements (authors, title, year); kind: gradient, perturbation or cam;
        signed: whether negative values mean something; settings: the method's :class:`Setting` rows, the one
        place a setting is declared (the page's widgets, the CLI's ``--set``, ``methods --json``, the cache key
        and the permalink all read them).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    kind: ClassVar[Kind]
    signed: ClassVar[bool] = True
    settings: ClassVar[tuple[Setting, ...]] = ()
    incomplete_advice: ClassVar[str] = "raise the steps before trusting this map"
    """What the completeness sentence tells a reader to do when the map misses its score change."""

    def __init__(self, **params: Any) -> None:
        self.params = check_params(self.name, self.schema(), params)

    @classmethod
    def schema(cls) -> tuple[Setting, ...]:
        """Every setting of the method (a wrapper adds those of the methods it wraps)."""
        return cls.settings

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each setting's default value."""
        return {s.name: s.default for s in cls.schema()}

    def applies_to(self, model: LoadedModel) -> str | None:
        """Why this method cannot explain ``model``, or ``None`` when it can."""
        return None

    def resolved_params(self, model: LoadedModel) -> dict[str, Any]:
        """The settings as they will be used for ``model``: defaults that depend on the model filled in, settings
        that do not apply to the chosen values left out (so the cache key holds only what the result depends on)."""
        return relevant(self.schema(), self.params)

    def attribute(self, model: LoadedModel, x: torch.Tensor, target: int) -> Attribution:
        """Explain ``model``'s logit for ``target`` at input ``x``.

        Args:
            model: from :func:`interp.load_model`; shared, so the call holds its gate alone throughout.
            x: ``(1, C, H, W)`` or ``(C, H, W)`` preprocessed input.
            target: class index.

        Raises:
            MethodNotApplicable: the method cannot explain this model; the message says why.
        """
        reason = self.applies_to(model)
        if reason:
            raise MethodNotApplicable(f"{self.title} does not apply to {model.name}: {reason}")
        if x.dim() == 3:
            x = x.unsqueeze(0)
        target = check_class(target, model.num_classes, model.name, model.class_names)
        params = self.resolved_params(model)
        x = x.to(model.device, torch.float32)
        with model.exclusive(), torch.enable_grad():
            start = time.perf_counter()
            raw, delta, extras = self._attribute(model, x, target, params)
            seconds = time.perf_counter() - start
        raw_np = raw.detach().float().cpu().numpy()[0]
        if not np.isfinite(raw_np).all():  # drawn, scored or cached, such a map would mislead: say so instead
            raise MapNotFinite(f"{self.title} gave NaN or infinite values for class {target} of this image (a "
                               "numerical failure of the method on this model); try another method.")  # fmt: skip
        return Attribution(self.name, int(target), raw_np.astype(np.float32), params, seconds, delta, extras)

    @abstractmethod
    def _attribute(
        self, model: LoadedModel, x: torch.Tensor, target: int, params: dict[str, Any]
    ) -> tuple[torch.Tensor, float | None, dict[str, Any]]:
        """Return ``(raw (1, C, H, W), delta or None, extras)``; called inside ``model.exclusive()``, grads enabled."""


METHODS: dict[str, type[AttributionMethod]] = {}


def register(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator: add a method to the registry under ``cls.name``."""
    if cls.name in METHODS:
        raise ValueError(f"two attribution methods are named {cls.name!r}.")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **params: Any) -> AttributionMethod:
    if not isinstance(name, str):  # None or a list of names, which raised TypeError on the registry
        raise BadSettingError(f"method must be one method's name (e.g. 'grad_cam'), got {shown(name)}; see "
                              "`python -m interp methods`.")  # fmt: skip
    if name not in METHODS:
        raise BadSettingError(f"{shown(name)} is not an attribution method;{_did_you_mean(name)} choose one of "
                              f"{', '.join(METHODS)}.")  # fmt: skip
    return METHODS[name](**params)


def method_names(requested: Sequence[str]) -> list[str]:
    """The registered names ``requested`` asks for, in order, each once; ``"all"`` anywhere means every method. An
    entry may hold several names separated by commas (``"grad_cam,saliency"``), as people type them.

    Raises:
        ValueError: a name is not registered; the message suggests the method it is closest to, matching names,
            titles ("Grad-CAM") and initials ("ig"), and where the list is.
    """
    requested = name_list(requested, "methods")  # "grad_cam" alone is one method, not g, r, a…
    names = [name for entry in requested
             for name in ([n.strip() for n in entry.split(",") if n.strip()] if "," in entry else [entry])]  # fmt: skip
    if requested and not names:
        raise BadSettingError("no method was named; see `python -m interp methods`.")
    if "all" in names:
        return list(METHODS)
    for name in names:
        if name not in METHODS:
            raise BadSettingError(f"unknown method {shown(name)};{_did_you_mean(name)} see `python -m interp methods`.")
    return list(dict.fromkeys(names))


def _did_you_mean(name: str) -> str:
    """`` did you mean X?`` for the registered method ``name`` most likely stands for, or an empty string."""
    key = _squash(name)
    if not key:
        return ""
    spellings: dict[str, str] = {}
    for method, cls in METHODS.items():
        spellings.setdefault(_squash(method), method)
        spellings.setdefault(_squash(cls.title), method)
        words = method.split("_")
        if len(words) > 1:
            spellings.setdefault("".join(word[0] for word in words), method)
    if key in spellings:
        return f" did you mean {spellings[key]}?"
    close = difflib.get_close_matches(key, list(spellings), n=1, cutoff=0.75)
    return f" did you mean {spellings[close[0]]}?" if close else ""


def _squash(text: str) -> str:
    """``text`` lowercased, "+" as "p", everything else but letters and digits removed: "Grad-CAM++" -> "gradcampp"."""
    return "".join(ch for ch in text.lower().replace("+", "p") if ch.isalnum())


def target_logit(model: LoadedModel, target: int):
    """A forward function returning the ``(B,)`` logits of ``target``."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.model(x)[:, target]

    return forward
