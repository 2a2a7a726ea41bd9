"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"), cascading: the
layers' weights are replaced by random ones from the top (the logits layer) down, block by block, and after each
step the method's map is compared with its map on the trained model. A map that stays the same while the network
is destroyed shows the image, not what the model learned.

The check works on one copy of the network, made once and randomised step by step: the shared model is never
touched (and never reloaded from disk). Each parameter tensor is redrawn from a generator seeded per request, with
the mean and standard deviation it had, so activations keep their scale and the result is reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from interp.errors import BadSettingError, check_class, seed_number, shown
from interp.models import LoadedModel
from interp.models.given import loaded
from interp.models.layout import model_input

STILL_THE_SAME = 0.5
"""A map whose rank correlation with the trained model's map averages at least this over the cascade is flagged: it
stays close to the trained map while layer after layer is destroyed (Adebayo et al., Figure 2). Measured on
``shapes_cnn`` with the shapes photos: Guided Backprop 0.58 and 0.61 (it only changes once the first convolution is
random), Input × Gradient 0.34 and 0.41, Saliency 0.22 and 0.23, SmoothGrad 0.15 and 0.17, Grad-CAM about 0."""


@dataclass(frozen=True)
class RandomisedStep:
    """After randomising every layer down to ``layer``: the map's similarity to the trained model's map."""

    layer: str
    spearman: float
    ssim: float


@dataclass(frozen=True)
class RandomisationCheck:
    """The cascade for one method, image and class.

    Attributes:
        steps: top layer first; each step randomises one more layer (or block).
        mean_spearman: the rank correlation averaged over the steps (the area under the cascade's curve).
        flagged: the map stays like the trained model's through the cascade (``mean_spearman ≥ STILL_THE_SAME``).
        sentence: what that means, in words a reviewer can act on.
    """

    method: str
    target: int
    steps: tuple[RandomisedStep, ...]
    mean_spearman: float
    flagged: bool
    sentence: str


def cascade_layers(model: LoadedModel) -> list[str]:
    """The steps of the cascade, top first: the model's top-level parts with weights, a sequence of blocks taken
    block by block (``blocks.11`` … ``blocks.0``, ``layer4`` … as its blocks)."""
    model = loaded(model, "cascade_layers")
    names = []
    for name, child in model.structure.named_children():
        parts = list(child.named_children())
        blocks = isinstance(child, torch.nn.Sequential) and len(parts) >= 2 and all(
            any(True for _ in sub.children()) for _, sub in parts)  # fmt: skip
        for sub_name, sub in parts if blocks else [("", child)]:
            if any(True for _ in sub.parameters()):
                names.append(f"{name}.{sub_name}" if sub_name else name)
    return names[::-1]


def cascading_randomisation(
    model: LoadedModel, x: torch.Tensor, method: str, target: int, *, params: dict[str, Any] | None = None,
    seed: int = 0,
) -> RandomisationCheck:  # fmt: skip
    """Run ``method`` on ``model`` and on a copy whose layers are randomised one step at a time, top first.

    Args:
        model: from :func:`interp.load_model` (left untouched).
        x: ``(C, H, W)`` preprocessed input, or an image (preprocessed here, as :meth:`LoadedModel.preprocess`
            takes it).
        method: a registry name; ``params`` its settings.
        target: class index or name.
        seed: the random weights' seed.
    """
    model = loaded(model, "cascading_randomisation")
    from interp.attribution import attribute
    from interp.models.loading import LoadedModel as Loaded
    from interp.models.loading import WeightsInfo

    if params is not None and not isinstance(params, Mapping):
        raise BadSettingError(f"params are the method's settings by name, e.g. {{'steps': 32}}; got {shown(params)}.")
    seed = seed_number(seed)
    params = dict(params or {})
    target = check_class(target, model.num_classes, model.name, model.class_names)
    x = model_input(model, x)  # once, for every randomised copy
    trained = np.abs(attribute(model, x, method, target, **params).map)
    with model.exclusive() as net:
        clone = copy.deepcopy(net)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    steps = []
    for layer in cascade_layers(model):
        with torch.no_grad():
            for p in clone.get_submodule(layer).parameters():
                mean, std = p.float().mean(), (p.float().std() if p.numel() > 1 else torch.tensor(0.0))
                p.copy_((torch.randn(p.shape, generator=gen) * std.cpu() + mean.cpu()).to(p))
        randomised = Loaded(model.spec, clone, WeightsInfo("random", f"randomised down to {layer}", f"sanity-{layer}"),
                            model.data_config, model.class_names, model.device)  # fmt: skip
        after = np.abs(attribute(randomised, x, method, target, **params).map)
        steps.append(RandomisedStep(layer, _spearman(trained, after), _ssim(trained, after)))
    mean = float(np.mean([step.spearman for step in steps])) if steps else 0.0
    flagged = mean >= STILL_THE_SAME
    if flagged:
        sentence = (f"This map does not depend on what the model learned: as the weights are randomised layer by layer "
                    f"it keeps ranking pixels as before (rank correlation {mean:.2f} on average).")  # fmt: skip
    else:
        sentence = (f"This map depends on what the model learned: randomising the weights changes it (rank "
                    f"correlation {mean:.2f} on average over the cascade).")  # fmt: skip
    return RandomisationCheck(method, int(target), tuple(steps), mean, flagged, sentence)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    def unit(m: np.ndarray) -> np.ndarray:
        span = np.ptp(m)
        return (m - m.min()) / span if span > 0 else np.zeros_like(m)

    return float(structural_similarity(unit(a), unit(b), data_range=1.0))
