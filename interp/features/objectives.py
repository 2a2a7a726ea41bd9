"""What activation maximisation makes larger: a channel, one spatial neuron, a class logit or probability, and the
negative of each; and the diversity term that pushes a batch's images apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from interp.errors import BadSettingError, class_index, shown, whole_number

if TYPE_CHECKING:
    from interp.models import LoadedModel

Kind = Literal["channel", "neuron", "class", "probability"]
KINDS: dict[str, str] = {
    "channel": "a channel: its mean over the whole map",
    "neuron": "one neuron: a channel at one position of the map",
    "class": "a class logit",
    "probability": "a class probability (its logarithm is what is optimised)",
}


@dataclass(frozen=True)
class Objective:
    """One unit of the network to drive up (or down, when ``negative``).

    Attributes:
        kind: one of :data:`KINDS`.
        layer: the module path for ``channel`` and ``neuron``; ignored (``None``) for the class kinds.
        unit: the channel index, or the class index; for the class kinds also a class name or one of its synonyms, in
            any case (``"tiger cat"``, ``"Tabby"``), read against the model's classes where the objective is used
            (:meth:`for_model`).
        position: ``(row, column)`` of a ``neuron`` on the layer's grid; ``None`` for the grid's centre.
        negative: minimise instead (the pattern the unit is most against).
    """

    kind: Kind
    unit: int | str
    layer: str | None = None
    position: tuple[int, int] | None = None
    negative: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadSettingError(f"objective is one of {', '.join(KINDS)}; got {shown(self.kind)}.")
        if self.kind in ("channel", "neuron") and not self.layer:
            raise BadSettingError(f"a {self.kind} objective needs a layer.")
        if self.layer is not None and not isinstance(self.layer, str):
            raise BadSettingError(f"the layer is named by its dotted path (e.g. 'layer3.1'), got {shown(self.layer)}.")
        if self.kind in ("class", "probability") and isinstance(self.unit, str):
            text = self.unit.strip()
            if not text:
                raise BadSettingError("the class is an index or a class name; got an empty name.")
            if not text.lstrip("-").isdigit():
                object.__setattr__(self, "unit", text)  # a class name: the model reads it (for_model)
                return
            object.__setattr__(self, "unit", int(text))
        object.__setattr__(self, "unit", _whole(self.unit, "the unit (a channel or class index)"))
        if self.unit < 0:
            raise BadSettingError(f"the unit is a channel or class index from 0; got {self.unit}.")
        if self.position is not None:
            pair = tuple(self.position) if isinstance(self.position, tuple | list) else ()
            if len(pair) != 2:
                raise BadSettingError(f"a neuron's position is (row, column); got {shown(self.position)}.")
            object.__setattr__(self, "position", tuple(_whole(v, "a neuron's position") for v in pair))

    @property
    def on_layer(self) -> bool:
        return self.kind in ("channel", "neuron")

    def for_model(self, model: LoadedModel) -> Objective:
        """This objective with a class given by name turned into the model's index for it (the same objective when
        the unit is already an index), or the sentence :func:`~interp.errors.class_index` says for a name the model
        does not have (with the nearest names)."""
        if isinstance(self.unit, int):
            return self
        index = class_index(self.unit, model.class_names, "the class", model.name)
        return Objective(self.kind, index, self.layer, self.position, self.negative)

    def flipped(self) -> Objective:
        return Objective(self.kind, self.unit, self.layer, self.position, not self.negative)

    def describe(self, class_names: Sequence[str] | None = None) -> str:
        """``maximise channel 5 of blocks.3``, ``maximise logit of class 3 (star)`` (a class named where
        ``class_names`` are given)."""
        sign = "minimise" if self.negative else "maximise"
        where = f" of {self.layer}" if self.on_layer else ""
        at = f" at {self.position}" if self.kind == "neuron" and self.position is not None else ""
        if self.kind in ("class", "probability"):  # what is optimised: "probability 1 … gives -42.1" read as a bug
            what = "logit" if self.kind == "class" else "log-probability"
            if isinstance(self.unit, str):  # a name not read against a model yet
                return f"{sign} {what} of class {shown(self.unit)}"
            named = f" ({class_names[self.unit]})" if class_names is not None and 0 <= self.unit < len(class_names) \
                else ""
            return f"{sign} {what} of class {self.unit}{named}"
        return f"{sign} {self.kind} {self.unit}{where}{at}"

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def values(self, grid: torch.Tensor | None, logits: torch.Tensor | None) -> torch.Tensor:
        """``(N,)``: the unit's value per image, signed (larger is better for the optimiser).

        Args:
            grid: ``(N, C, h, w)`` the layer's output (see :func:`interp.features.units.as_grid`), for layer kinds.
            logits: ``(N, classes)``, for the class kinds.
        """
        if self.on_layer:
            assert grid is not None
            if self.unit >= grid.shape[1]:
                raise BadSettingError(f"{self.layer} has {grid.shape[1]} channels (0 to {grid.shape[1] - 1}); "
                                      f"got channel {self.unit}.")  # fmt: skip
            channel = grid[:, self.unit]
            if self.kind == "channel":
                value = channel.mean(dim=(1, 2))
            else:
                h, w = channel.shape[1:]
                y, x = self.position if self.position is not None else (h // 2, w // 2)
                if not (0 <= y < h and 0 <= x < w):
                    raise BadSettingError(f"{self.layer}'s grid is {h}×{w}; position {(y, x)} is outside it.")
                value = channel[:, y, x]
        else:
            assert logits is not None
            if self.unit >= logits.shape[1]:
                raise BadSettingError(f"the model has {logits.shape[1]} classes (0 to {logits.shape[1] - 1}); "
                                      f"got class {self.unit}.")  # fmt: skip
            value = logits[:, self.unit] if self.kind == "class" else F.log_softmax(logits, dim=1)[:, self.unit]
        return -value if self.negative else value


def model_objective(objective: Objective, model: LoadedModel) -> Objective:
    """``objective`` read against ``model`` (:meth:`Objective.for_model`); anything but an :class:`Objective` is a
    sentence (a layer's name given alone was an ``AttributeError``)."""
    if not isinstance(objective, Objective):
        raise BadSettingError(f"the unit is an Objective, e.g. Objective('channel', 5, 'layer3'); got "
                              f"{shown(objective)}.")  # fmt: skip
    return objective.for_model(model)


def diversity(grid: torch.Tensor) -> torch.Tensor:
    """How different a batch's images are at a layer, ``<= 0`` (0: as different as can be): minus the mean cosine
    similarity between the images' Gram matrices (their styles), over every pair (Olah et al. 2017, "Feature
    Visualization", the diversity section). Adding it with a positive weight pushes the images apart."""
    n = grid.shape[0]
    if n < 2:
        return grid.new_zeros(())
    flat = grid.flatten(2)  # (N, C, hw)
    grams = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).flatten(1), dim=1)
    sim = grams @ grams.T
    return -(sim.sum() - sim.diagonal().sum()) / (n * (n - 1))


def _whole(value: object, what: str) -> int:
    """``value`` as an ``int`` (:func:`~interp.errors.whole_number`), else the sentence: a float or a bool indexed the
    layer's output deep inside the pass (IndexError), a string failed a comparison."""
    number = whole_number(value)
    if number is None:
        raise BadSettingError(f"{what} is a whole number; got {shown(value)}.")
    return number
