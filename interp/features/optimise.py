"""Activation maximisation: gradient ascent on an image so that one unit fires (Erhan et al. 2009; Olah et al.
2017, "Feature Visualization", Distill).

Every step draws the image from its parameterisation (:mod:`interp.features.params`), moves it a little at random
(jitter, scale, rotation: transformation robustness, so that the result is a pattern the unit finds anywhere and not
adversarial noise), runs the model, and climbs the objective minus the penalties (total variation, L2 around grey),
plus the diversity term for a batch. The randomness comes from one generator seeded per request.

The model is shared: each step takes its gate alone for one forward and backward pass, so other visitors'
predictions run between the steps of a long visualisation instead of waiting for all of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from interp.cache import ResultCache, computed_once, result_key
from interp.concepts.activations import _keeper, _LayerReached, resolve_layer
from interp.errors import BadSettingError
from interp.features.objectives import Objective, diversity, model_objective
from interp.features.params import ImageParam, to_uint8
from interp.features.settings import VisualiseSettings
from interp.features.units import as_grid
from interp.models.given import loaded
from interp.models.hooks import hooked
from interp.models.loading import LoadedModel


@dataclass(frozen=True)
class Step:
    """Where an optimisation is, for a progress display: ``step`` of ``total``, the objective's mean ``value`` over
    the batch, the current ``images`` ``(N, H, W, 3)`` ``uint8`` (``None`` between snapshots) and seconds left."""

    step: int
    total: int
    value: float
    images: np.ndarray | None
    seconds_left: float | None


OnStep = Callable[[Step], bool | None]
"""Called after every step; return ``True`` to stop there (the result keeps the image reached)."""


@dataclass(frozen=True)
class Visualisation:
    """What activation maximisation made.

    Attributes:
        objective, settings: what was asked.
        images: ``(N, size, size, 3)`` ``uint8``.
        curve: ``(steps_done,)`` the objective's mean over the batch at each step (signed as optimised).
        values: ``(N,)`` the objective for each final image, untransformed (what the unit gives the picture shown).
        steps_done: steps taken (fewer than asked when stopped).
        seconds: how long the optimisation took.
    """

    objective: Objective
    settings: VisualiseSettings
    images: np.ndarray
    curve: np.ndarray
    values: np.ndarray
    steps_done: int
    seconds: float

    @property
    def stopped(self) -> bool:
        return self.steps_done < self.settings.steps

    @property
    def flat(self) -> bool:
        """The objective was exactly 0 at every step and on every final image: the unit never responded (a channel
        after a ReLU that nothing here reaches), so no gradient of the unit shaped the images."""
        return self.steps_done > 0 and not np.any(self.curve) and not np.any(self.values)

    def flat_note(self) -> str:
        """What a user should know when :attr:`flat`: a sentence, or an empty string."""
        if not self.flat:
            return ""
        o = self.objective
        unit = f"{o.kind.capitalize()} {o.unit}" + (f" of {o.layer}" if o.on_layer else "")
        return (f"{unit} stayed at exactly 0 for all {self.steps_done} steps: it never responded, so no gradient of "
                "it shaped this picture (it is the starting noise, smoothed), not what the unit looks for. Try another "
                "unit, the other sign or another layer.")  # fmt: skip

    def summary(self) -> dict:
        return {"objective": self.objective.as_dict(), "settings": self.settings.as_dict(),
                "steps_done": self.steps_done, "seconds": round(self.seconds, 3),
                "final_values": [float(v) for v in self.values], "curve": [float(v) for v in self.curve]}  # fmt: skip


def _key(model: LoadedModel, objective: Objective, settings: VisualiseSettings) -> str:
    return result_key(model=model.key, image="-", method="visualise",
                      params={"objective": objective.as_dict(), **settings.as_dict()})  # fmt: skip


def _transform(images: torch.Tensor, settings: VisualiseSettings, gen: torch.Generator) -> torch.Tensor:
    """Shift, zoom and turn the batch by random amounts (one affine resampling; the border shows grey)."""
    if settings.jitter == 0 and settings.scale == 0 and settings.rotate == 0:
        return images
    n = images.shape[0]
    u = torch.rand((n, 4), generator=gen) * 2 - 1  # uniform in [-1, 1)
    zoom = 1 + settings.scale * u[:, 0]
    angle = torch.deg2rad(settings.rotate * u[:, 1])
    shift = settings.jitter * 2 / settings.size * u[:, 2:]  # pixels in affine_grid's [-1, 1] units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def _model_input(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """RGB in ``[0, 1]`` → what the network takes: its input size where it needs one (a ViT), normalised with its
    own mean and standard deviation."""
    if model.spec.family == "vit":
        side = model.data_config["input_size"][1:]
        if tuple(images.shape[-2:]) != tuple(side):
            images = F.interpolate(images, size=side, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(model.data_config["mean"], device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(model.data_config["std"], device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def _total_variation(images: torch.Tensor) -> torch.Tensor:
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., 1:] - images[..., :-1]).abs().mean()


def objective_values(model: LoadedModel, objective: Objective, images: torch.Tensor, diversity_layer: str | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """``(N,)`` the objective on a batch ``(N, 3, H, W)`` of RGB in ``[0, 1]``, with the graph back to ``images``;
    and, when ``diversity_layer`` is given, that layer's ``(N, C, h, w)`` output (for :func:`diversity`). Takes the
    model's gate alone for the pass. A layer objective's pass ends at its layer."""
    model = loaded(model, "objective_values")
    objective = model_objective(objective, model)
    layers = {}
    if objective.on_layer:
        layers[objective.layer] = resolve_layer(model, objective.layer)
    if diversity_layer is not None:
        layers[diversity_layer] = resolve_layer(model, diversity_layer)
    stop = len(layers) if objective.on_layer else None
    kept: dict[str, torch.Tensor] = {}
    logits = None
    x = _model_input(model, images)
    with model.exclusive() as net, torch.enable_grad(), hooked() as handles:
        for name, module in layers.items():
            handles.append(module.register_forward_hook(_keeper(kept, name, stop_at=stop)))
        try:
            logits = net(x)
        except _LayerReached:
            pass
    missing = [name for name in layers if name not in kept]
    if missing:
        raise BadSettingError(f"{', '.join(missing)} of {model.name} is not run by its forward pass; choose another layer.")
    grid = as_grid(model, kept[objective.layer], objective.layer) if objective.on_layer else None
    values = objective.values(grid, logits)
    div = as_grid(model, kept[diversity_layer], diversity_layer) if diversity_layer is not None else None
    return values, div


def visualise(
    model: LoadedModel,
    objective: Objective,
    settings: VisualiseSettings | None = None,
    *,
    cache: ResultCache | None = None,
    on_step: OnStep | None = None,
    snapshot_every: int = 16,
    on_wait: Callable[[], None] | None = None,
) -> Visualisation:
    """Optimise ``settings.batch`` images so that ``objective`` is as large as it gets.

    Args:
        model: any loaded model; its parameters are not touched (only the image is optimised).
        objective: the unit (see :class:`Objective`).
        settings: :class:`VisualiseSettings` (the defaults when ``None``).
        cache: a finished result is kept under the model, objective and settings, and returned at once next time.
        on_step: called after each step with a :class:`Step` (images every ``snapshot_every`` steps and at the end);
            returning ``True`` stops the optimisation, which returns what it reached.
        on_wait: called when another thread of this process is computing the same result: this call waits for it
            and returns it (a class opening one link computes it once), or computes it when that run was stopped.

    Returns:
        A :class:`Visualisation`.
    """
    model = loaded(model, "visualise")
    settings = VisualiseSettings() if settings is None else settings
    if not isinstance(settings, VisualiseSettings):
        raise BadSettingError(f"settings are a VisualiseSettings (e.g. VisualiseSettings(steps=128)) or None; got "
                              f"{type(settings).__name__}.")  # fmt: skip
    objective = model_objective(objective, model)  # a class by name: its index, before it keys the cache
    key = _key(model, objective, settings)
    with computed_once(cache, key, on_wait) as hit:
        if hit is not None:
            meta = hit.meta
            return Visualisation(objective, settings, hit.arrays["images"], hit.arrays["curve"], hit.arrays["values"],
                                 int(meta["steps_done"]), float(meta["seconds"]))  # fmt: skip
        result = _optimise(model, objective, settings, on_step, snapshot_every)
        if cache is not None and not result.stopped:  # a stopped run is not kept: the next one starts afresh
            cache.put(key, {"images": result.images, "curve": result.curve, "values": result.values},
                      {"steps_done": result.steps_done, "seconds": result.seconds})  # fmt: skip
        return result


def _optimise(model: LoadedModel, objective: Objective, settings: VisualiseSettings, on_step: OnStep | None,
              snapshot_every: int) -> Visualisation:  # fmt: skip
    """The optimisation :func:`visualise` runs when nothing is stored."""
    gen = torch.Generator().manual_seed(settings.seed)
    param = ImageParam(settings.param, settings.size, settings.batch, gen, settings.decorrelate, model.device)
    optimiser = torch.optim.Adam(param.parameters(), lr=settings.lr)
    div_layer = None
    if settings.diversity > 0 and settings.batch > 1:
        div_layer = objective.layer if objective.on_layer else model.spec.cam_layer
    curve: list[float] = []
    start = time.perf_counter()
    for step in range(1, settings.steps + 1):
        optimiser.zero_grad(set_to_none=True)
        images = param()
        values, grid = objective_values(model, objective, _transform(images, settings, gen), div_layer)
        loss = -values.mean()
        if settings.tv:
            loss = loss + settings.tv * _total_variation(images)
        if settings.l2:
            loss = loss + settings.l2 * ((images - 0.5) ** 2).mean()
        if grid is not None:
            loss = loss - settings.diversity * diversity(grid)
        loss.backward()
        optimiser.step()
        value = float(values.detach().mean())
        if not math.isfinite(value):
            raise BadSettingError(f"the objective became {value} at step {step}; lower lr (now {settings.lr}).")
        curve.append(value)
        if on_step is not None:
            elapsed = time.perf_counter() - start
            snap = step % snapshot_every == 0 or step == settings.steps
            shown = to_uint8(param()) if snap else None
            if on_step(Step(step, settings.steps, value, shown, elapsed / step * (settings.steps - step))):
                break
    with torch.no_grad():
        final = param()
    finals, _ = objective_values(model, objective, final.detach())
    return Visualisation(objective, settings, to_uint8(final), np.asarray(curve, np.float32),
                         finals.detach().float().cpu().numpy(), len(curve), time.perf_counter() - start)  # fmt: skip


def with_settings(settings: VisualiseSettings, **changes) -> VisualiseSettings:
    """``settings`` with some fields changed (checked again)."""
    return replace(settings, **changes)
