"""Dataset examples across a unit's spectrum (Olah et al. 2017, "Feature Visualization", Distill: the columns from
the minimum to the maximum activating examples, beside the optimised images).

A unit's value on an image is what activation maximisation drives: a channel's mean over its map, one neuron of it,
or a class logit. The images are ranked by it; the four columns take the lowest, those just below and just above the
centre, and the highest. The centre is zero when the values cross it (a layer before its ReLU, a logit); after a
ReLU nothing is negative, so the centre is then the median and the two middle columns say so. Where the unit is
spatial, each example is a crop around the place on the grid where the channel is strongest (or weakest, for the
negative columns), as wide as the part of the image a cell of that layer draws on: its effective receptive field
(Luo et al. 2016), measured as the square around the cell holding 90% of the input gradient, at least a quarter of
the view. Ties are broken by the images' order, so the ranking is the same on every run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from interp.cache import ResultCache
from interp.concepts.activations import activations_by_layer
from interp.errors import BadSettingError, at_least
from interp.features.objectives import Objective, model_objective
from interp.features.units import _output, as_grid
from interp.images import LoadedImage, image_list
from interp.models.given import loaded
from interp.models.loading import LoadedModel

COLUMNS = ("minimum", "slightly negative", "slightly positive", "maximum")
FIELD_SHARE = 0.9
"""The share of a cell's input gradient its crop must hold (:func:`effective_field`)."""
FIELD_IMAGES = 4
"""How many of the images (the first ones) the field's gradient is averaged over."""
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Example:
    """One image in a column.

    Attributes:
        index: its position in the images given.
        name: its name.
        value: the unit's value on it.
        box: ``(x0, y0, x1, y1)`` of the crop in the model's view of the image (see ``LoadedModel.view``), or
            ``None`` when the whole view is shown (the unit is not spatial, or its cells are as large as the view).
    """

    index: int
    name: str
    value: float
    box: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class Spectrum:
    """A unit's values over a set of images, and the examples of each column.

    Attributes:
        objective: the unit (its sign is ignored: the spectrum shows both ends).
        values: ``(N,)`` the unit's value on each image, in the order given.
        columns: ``{column: examples}`` for each of :data:`COLUMNS`, the lowest first within a column.
        centre: the value the middle columns sit on either side of.
        centred_on: ``"zero"`` or ``"median"``.
        grid: ``(h, w)`` of the layer (``(1, 1)`` for a logit).
        field: the side in pixels of the model's view of the unit's effective receptive field (see
            :func:`effective_field`), ``None`` for a unit that is not spatial.
        crop: the side of the examples' crops (the field, at least a quarter of the view), ``None`` where each
            example is the whole view.
    """

    objective: Objective
    values: np.ndarray
    columns: dict[str, tuple[Example, ...]]
    centre: float
    centred_on: str
    grid: tuple[int, int]
    field: int | None = None
    crop: int | None = None

    def label(self, column: str) -> str:
        if self.centred_on == "zero" or column not in ("slightly negative", "slightly positive"):
            return column.capitalize()
        return "Just below the median" if column == "slightly negative" else "Just above the median"

    def summary(self) -> dict:
        return {"objective": self.objective.as_dict(), "centre": self.centre, "centred_on": self.centred_on,
                "grid": list(self.grid), "field_px": self.field, "crop_px": self.crop, "images": int(self.values.size),
                "columns": {c: [{"index": e.index, "name": e.name, "value": e.value, "box": e.box} for e in ex]
                            for c, ex in self.columns.items()}}  # fmt: skip


def _classifier_name(model: LoadedModel) -> str | None:
    get = getattr(model.structure, "get_classifier", None)
    head = get() if callable(get) else None
    if not isinstance(head, torch.nn.Module):
        return None
    return next((name for name, module in model.structure.named_modules() if module is head and name), None)


def unit_maps(model: LoadedModel, objective: Objective, images: Sequence[LoadedImage], *,
              cache: ResultCache | None = None, batch_size: int = 32, progress: Progress | None = None,
              ) -> np.ndarray:  # fmt: skip
    """``(N, h, w)`` float32: the unit's channel map on each image (for a class: ``(N, 1, 1)``, the logit or, for the
    probability objective, the log-probability), extracted in batches through the concept lab's extraction and its
    disk cache (one pass per image, ending at the layer)."""
    model = loaded(model, "unit_maps")
    objective = model_objective(objective, model)
    images = image_list(images)  # paths, arrays or pictures given as a set
    if not images:
        raise BadSettingError("the spectrum needs at least one image.")
    batch_size = at_least(batch_size, 1, "batch size")
    layer = objective.layer if objective.on_layer else _classifier_name(model)
    if layer is None:  # a network without timm's get_classifier: plain batched passes
        logits = [model.run(model.batch_of([model.pixels(im.image) for im in images[s : s + batch_size]])).float().cpu()
                  for s in range(0, len(images), batch_size)]  # fmt: skip
        rows = torch.cat(logits).numpy()
        shape: tuple[int, ...] = (rows.shape[1], 1, 1)
    else:
        first = _output(model, layer, [images[0]])
        shape = tuple(as_grid(model, first, layer).shape[1:])
        flat = activations_by_layer(model, [layer], images, cache=cache, batch_size=batch_size, progress=progress)[layer]
        if first.ndim == 3:  # tokens: put the patch tokens on their grid, as the optimiser sees them
            rows = as_grid(model, torch.from_numpy(flat).view(len(images), *first.shape[1:]), layer).numpy()
        else:
            rows = flat.reshape(len(images), *shape)
    if objective.unit >= shape[0]:
        what = f"{layer} has {shape[0]} channels" if objective.on_layer else f"the model has {shape[0]} classes"
        raise BadSettingError(f"{what} (0 to {shape[0] - 1}); got {objective.unit}.")
    rows = rows.reshape(len(images), *shape)
    if objective.kind == "probability":  # what the objective names: the log-probability, not the logit it ranked by
        rows = torch.log_softmax(torch.from_numpy(np.asarray(rows, np.float32)), dim=1).numpy()
    return np.ascontiguousarray(rows[:, objective.unit], dtype=np.float32)


def spectrum(model: LoadedModel, objective: Objective, images: Sequence[LoadedImage], *, per_column: int = 4,
             cache: ResultCache | None = None, batch_size: int = 32, progress: Progress | None = None) -> Spectrum:  # fmt: skip
    """Rank ``images`` by the unit of ``objective`` and pick ``per_column`` examples for each of :data:`COLUMNS`."""
    model = loaded(model, "spectrum")
    per_column = at_least(per_column, 1, "per_column")
    objective = model_objective(objective, model)  # the Spectrum holds the index
    images = image_list(images)
    maps = unit_maps(model, objective, images, cache=cache, batch_size=batch_size, progress=progress)
    n, h, w = maps.shape
    if objective.kind == "neuron":
        y, x = objective.position if objective.position is not None else (h // 2, w // 2)
        if not (0 <= y < h and 0 <= x < w):
            raise BadSettingError(f"{objective.layer}'s grid is {h}×{w}; position {(y, x)} is outside it.")
        values = maps[:, y, x]
    else:
        values = maps.mean(axis=(1, 2))
    crosses = values.min() < 0 < values.max()
    centre = 0.0 if crosses else float(np.median(values))
    picks = pick_columns(values, centre, per_column)
    vh, vw = (int(v) for v in model.data_config["input_size"][1:])
    field = effective_field(model, objective, images[:FIELD_IMAGES], (h, w)) if h * w > 1 else None
    crop = int(np.clip(field, vh // 4, vh)) if field is not None else None
    crop = crop if crop is not None and crop < min(vh, vw) else None
    columns = {
        column: tuple(
            Example(int(i), images[i].name, float(values[i]),
                    _crop(maps[i], objective, (vh, vw), crop, strongest=column in ("slightly positive", "maximum")))
            for i in idx
        )  # fmt: skip
        for column, idx in picks.items()
    }
    return Spectrum(objective, values.astype(np.float32), columns, centre, "zero" if crosses else "median", (h, w),
                    field, crop)  # fmt: skip


def pick_columns(values: np.ndarray, centre: float, per_column: int) -> dict[str, list[int]]:
    """Which images each of :data:`COLUMNS` shows, lowest value first: the minimum and the slightly negative columns
    from the images below ``centre``, the others from those at or above it; no image in two columns. A side with
    fewer than ``2 * per_column`` images gives its outer column the more extreme half (rounded up) and the inner one
    the rest, so a small set's columns do not repeat each other (16 photos, 3 below zero: the minimum shows 2, the
    slightly negative column the third), and a column can be empty."""
    order = np.argsort(values, kind="stable")
    below = [int(i) for i in order if values[i] < centre]
    above = [int(i) for i in order if values[i] >= centre]
    outer_below = min(per_column, (len(below) + 1) // 2)
    outer_above = min(per_column, (len(above) + 1) // 2)
    return {
        "minimum": below[:outer_below],
        "slightly negative": below[outer_below:][-per_column:] if len(below) > outer_below else [],
        "slightly positive": above[: len(above) - outer_above][:per_column],
        "maximum": above[len(above) - outer_above :],
    }


def spectrum_files(model: LoadedModel, s: Spectrum, images: Sequence[LoadedImage] | Mapping[int, LoadedImage],
                   ) -> dict[str, bytes]:  # fmt: skip
    """The examples as the model sees them, cropped as shown, named ``<column>_<rank>.png`` (lowest value first), and
    ``spectrum.json``: the model, :meth:`Spectrum.summary` and which image each file is. What ``python -m interp
    spectrum`` writes and the page's download holds. ``images``: those ranked, or only the examples by their index."""
    summary = {"model": model.name, "weights": model.weights.source, **s.summary(), "files": {}}
    files = {}
    for column, examples in s.columns.items():
        for rank, e in enumerate(examples):
            view = Image.fromarray(model.view(images[e.index].image))
            buf = io.BytesIO()
            (view.crop(e.box) if e.box is not None else view).save(buf, "PNG")
            name = f"{column.replace(' ', '_')}_{rank}.png"
            files[name] = buf.getvalue()
            summary["files"][name] = e.name
    files["spectrum.json"] = json.dumps(summary, indent=2).encode()
    return files


def effective_field(model: LoadedModel, objective: Objective, images: Sequence[LoadedImage], grid: tuple[int, int],
                    share: float = FIELD_SHARE) -> int:  # fmt: skip
    """The side in pixels of the model's view of the square, centred on the middle cell of the unit's grid, that holds
    ``share`` of the input gradient of the unit's channel at that cell, summed over ``images`` and the colours: the
    part of the image one cell of the layer really draws on (Luo et al. 2016, effective receptive field), far smaller
    than the theoretical field of a deep layer and far larger than a cell's stride. One backward pass of the images,
    through the model's gate."""
    from interp.features.optimise import objective_values

    h, w = grid
    centre = Objective("neuron", objective.unit, objective.layer, position=(h // 2, w // 2))
    x = torch.stack([model.preprocess(im.image) for im in images]).to(model.device)
    mean = torch.tensor(model.data_config["mean"], device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(model.data_config["std"], device=x.device).view(1, -1, 1, 1)
    rgb = (x * std + mean).detach().requires_grad_(True)
    values, _ = objective_values(model, centre, rgb)
    (grad,) = torch.autograd.grad(values.sum(), rgb)
    mass = grad.abs().sum(dim=(0, 1)).double().cpu().numpy()
    vh, vw = mass.shape
    if mass.sum() <= 0:
        return max(vh, vw)  # no gradient reaches the image: nothing to narrow it down
    cy, cx = (h // 2 + 0.5) * vh / h, (w // 2 + 0.5) * vw / w
    ys, xs = np.mgrid[0:vh, 0:vw]
    reach = np.maximum(np.abs(ys + 0.5 - cy), np.abs(xs + 0.5 - cx))  # from the cell's centre to a pixel's centre
    order = np.argsort(reach, axis=None, kind="stable")
    held = np.cumsum(mass.ravel()[order]) / mass.sum()
    half = reach.ravel()[order][min(int(np.searchsorted(held, share)), held.size - 1)]
    return int(min(round(2 * half + 1), max(vh, vw)))  # the square's side, out to the far pixel's edges


def _crop(unit_map: np.ndarray, objective: Objective, view: tuple[int, int], side: int | None,
          strongest: bool) -> tuple[int, int, int, int] | None:  # fmt: skip
    """The ``side``-wide square of the model's view around the unit's cell: the neuron's cell, or where the channel
    is strongest (weakest for the negative columns); ``None`` (the whole view) when ``side`` is."""
    h, w = unit_map.shape
    vh, vw = view
    if side is None:
        return None
    if objective.kind == "neuron":
        cy, cx = objective.position if objective.position is not None else (h // 2, w // 2)
    else:
        flat = int(np.argmax(unit_map) if strongest else np.argmin(unit_map))
        cy, cx = divmod(flat, w)
    y = int((cy + 0.5) * vh / h - side / 2)
    x = int((cx + 0.5) * vw / w - side / 2)
    y, x = min(max(y, 0), vh - side), min(max(x, 0), vw - side)
    return (x, y, x + side, y + side)
