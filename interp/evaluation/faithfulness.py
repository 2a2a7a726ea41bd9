"""Deletion and insertion (Petsiuk, Das & Saenko 2018, the RISE paper): a faithful map orders the pixels so that
removing its top pixels first makes the class score fall fastest (deletion: a low area under the curve), and
revealing them first on an empty image makes it rise fastest (insertion: a high area).

The input is cut into square regions of ``block`` × ``block`` pixels (1: single pixels, as in the paper), each region
ranked by the map's mean over it, and the regions are taken in ``steps`` equal groups in that order (largest first;
ties in row-major order, so the result is reproducible); a removed pixel loses all its colour channels to the
replacement image. The 2·(steps + 1) perturbed inputs go through the model in batches without gradients, under its
shared gate.

Why regions by default (16 × 16 pixels, the patch of a ViT-B/16; less on inputs under 128 pixels): taking scattered
single pixels away breaks an image's fine texture everywhere at once. A random map's pixels then wreck a photo about
as fast as a method's top pixels, and maps made of fine speckle (gradients, Integrated Gradients) win deletion for
that reason as much as for the evidence they find. Removing whole regions (Samek et al. 2017, "region perturbation")
keeps the rest of the image intact, so the score falls when the evidence goes. The shapes world, where the object's
mask is the right answer, measures it: scored as a map, the mask beats a random map by deletion on 28 of 30 test
images with 16-pixel regions and on 23 with single pixels (``tests/test_evaluation.py``).

The replacement decides what "removed" means. Black or grey fill pushes the image far from any the model saw, so a
score can fall because the image looks odd rather than because the evidence is gone; and a fill that differs from
its surroundings draws the removed region's outline, which a model can read as evidence in its own right (Rong et al.
2022, ROAD). The default is a blurred copy of the image (the RISE paper's choice for insertion): it keeps colours and
coarse layout and removes detail. ``"noisy_linear"`` is ROAD's answer to both: each removed pixel is filled from the
pixels around it (:mod:`interp.evaluation.imputation`), so no outline is left; it solves a sparse system per
perturbed image, about 0.1 s each on a 224-pixel input on the CPU, so a map's 42 inputs take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interp.attribution.baselines import make_baseline
from interp.attribution.memory import forward_batch_size
from interp.errors import SEED_LIMIT, BadSettingError, as_array, check_class, seed_number, shown, whole_number
from interp.evaluation.choices import REPLACEMENTS, Replacement, Score
from interp.evaluation.imputation import noisy_linear
from interp.evaluation.localisation import NOT_FINITE
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.models.given import loaded
from interp.models.layout import model_input


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of one map.

    Attributes:
        fractions: ``(steps + 1,)`` share of the pixels removed (deletion) or revealed (insertion), 0 to 1 (with
            regions, the share of pixels their regions hold).
        deletion: the target's score after removing each share, top of the map first.
        insertion: the target's score after revealing each share on the replacement image.
        deletion_auc, insertion_auc: areas under the curves (trapezoid rule over ``fractions``).
        score: ``"probability"`` (softmax of the target) or ``"logit"``.
        replacement: what removed pixels were replaced by.
        block: side of the square regions removed together, in input pixels (1: single pixels).
        maps: how many maps the curves average: 1, or several random maps for a floor (:func:`random_floor`).
        deletion_spread, insertion_spread: with several maps, the standard deviation of their areas (how far one
            random map's score strays from the floor); 0 for one map.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    score: str
    replacement: str
    block: int = 1
    maps: int = 1
    deletion_spread: float = 0.0
    insertion_spread: float = 0.0


def deletion_insertion(
    model: LoadedModel,
    x: torch.Tensor | LoadedImage,
    saliency: np.ndarray | torch.Tensor,
    target: int,
    *,
    steps: int = 20,
    replacement: Replacement = "blur",
    score: Score = "probability",
    block: int | None = None,
    batch: int | None = None,
    seed: int = 0,
) -> Curves:
    """Deletion and insertion curves of ``saliency`` for ``model``'s ``target`` at input ``x``.

    Args:
        model: from :func:`interp.load_model`.
        x: ``(C, H, W)`` or ``(1, C, H, W)`` preprocessed input, or an image (preprocessed here, as
            :meth:`LoadedModel.preprocess` takes it).
        saliency: ``(H, W)`` map at the input's resolution (``Attribution.map``; a ``(C, H, W)`` map is summed over
            channels). Larger means more important.
        target: class index.
        steps: groups of regions (the curves have ``steps + 1`` points), 1 to 1000.
        replacement: ``"blur"`` (default), ``"mean"`` (the image's mean colour), ``"black"``, or ``"noisy_linear"``
            (ROAD's imputation from the surrounding pixels, with noise from a generator seeded by ``seed``).
        score: the target's softmax probability (default, as in the paper) or its logit.
        block: side of the square regions removed together, in input pixels, 1 (single pixels, the paper's way) to
            the input's shorter side. By default :func:`default_block`: 16, less on inputs under 128 pixels.
            Regions at the right and bottom edges may be narrower.
        batch: inputs per forward pass; by default read from the memory budget. A caller scoring many maps reads it
            once and passes it: each budget read hands freed memory back to the OS, and on EfficientNet-Lite0 the
            page faults that follow cost a third of a map's scoring (0.68 s against 0.52 s with the batch given).
        seed: seeds the noise of ``"noisy_linear"``: the same call gives the same curves.
    """
    model = loaded(model, "deletion_insertion")
    x = model_input(model, x)
    if x.dim() == 3:
        x = x[None]
    sal = torch.as_tensor(as_array(saliency, np.float32))
    if sal.dim() == 3:
        sal = sal.sum(0)
    if tuple(sal.shape) != tuple(x.shape[-2:]):
        raise BadSettingError(f"the map is {tuple(sal.shape)} but the input is {tuple(x.shape[-2:])}; give a map of "
                              "the input's size.")  # fmt: skip
    if not torch.isfinite(sal).all():
        raise BadSettingError(NOT_FINITE)
    steps, seed = check_steps(steps), seed_number(seed)
    if replacement not in REPLACEMENTS:
        raise BadSettingError(f"replacement {shown(replacement)} is not one of {', '.join(REPLACEMENTS)}.")
    if score not in ("probability", "logit"):
        raise BadSettingError(f"score is 'probability' or 'logit', got {shown(score)}.")
    target = check_class(target, model.num_classes, model.name, model.class_names)
    height, width = sal.shape
    block = default_block((height, width)) if block is None else _whole_block(block)
    if not 1 <= block <= min(height, width):
        raise BadSettingError(f"block must be 1 to {min(height, width)} pixels (the input's shorter side), got "
                              f"{block}.")
    x = x.to(model.device, torch.float32)
    imputed = replacement == "noisy_linear"
    empty = None if imputed else make_baseline(replacement, x, model)
    rank, regions = _rank(sal, int(block))  # rank[y, x] = position of the pixel's region in the map's order
    rank = rank.to(x.device)
    counts = [round(regions * k / steps) for k in range(steps + 1)]
    jobs = [(True, c) for c in counts] + [(False, c) for c in counts]  # deletion, then insertion
    chunk = batch if batch is not None else forward_batch_size(model, x, len(jobs))
    scores: list[torch.Tensor] = []
    for start in range(0, len(jobs), chunk):
        part = jobs[start : start + chunk]
        top = torch.stack([rank < c for _, c in part])[:, None].to(x.dtype)  # 1 = pixels of the top regions
        deleting = torch.tensor([d for d, _ in part], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        visible = deleting * (1 - top) + (1 - deleting) * top  # deletion: all but the top shown; insertion: the top
        if imputed:
            seeds = [(seed * 10_007 + start + k) % SEED_LIMIT for k in range(len(part))]
            inputs = _impute(x[0], [s[0] < 0.5 for s in visible], seeds)
        else:
            inputs = empty + visible * (x - empty)
        logits = model.run(inputs).float()
        scores.append(logits.softmax(-1)[:, target] if score == "probability" else logits[:, target])
    values = torch.cat(scores).cpu().numpy().astype(np.float64)
    fractions = np.array([float((rank < c).sum()) for c in counts]) / rank.numel()  # the pixels' share, edges too
    deletion, insertion = values[: steps + 1], values[steps + 1 :]
    return Curves(fractions, deletion, insertion, float(np.trapezoid(deletion, fractions)),
                  float(np.trapezoid(insertion, fractions)), score, replacement, int(block))  # fmt: skip


def _impute(x: torch.Tensor, removed: list[torch.Tensor], seeds: list[int]) -> torch.Tensor:
    """``x`` filled by noisy linear imputation once per mask, the sparse solves on a thread per core (SciPy releases
    the GIL: 1.8× on 2 cores); each image's noise has its own seed, so threads cannot change the result."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int) -> torch.Tensor:
        return noisy_linear(x, removed[k], generator=torch.Generator().manual_seed(int(seeds[k])))

    with ThreadPoolExecutor(max_workers=max(1, min(len(removed), os.cpu_count() or 1))) as pool:
        return torch.stack(list(pool.map(one, range(len(removed)))))


def check_steps(steps: object) -> int:
    """The number of removal steps as an ``int`` from 1 to 1000, or a sentence (2.5 failed inside the pass)."""
    number = whole_number(steps)
    if number is None or not 1 <= number <= 1000:
        raise BadSettingError(f"steps must be 1 to 1000 (a whole number), got {shown(steps)}.")
    return number


def _whole_block(block: object) -> int:
    number = whole_number(block)
    if number is None:  # 2.5 was truncated to 2 without a word
        raise BadSettingError(f"block must be a whole number of pixels, got {shown(block)}.")
    return number


def model_block(model: LoadedModel, block: int | None = None) -> int:
    """``block`` for ``model``'s input (``None``: :func:`default_block` of it), checked to fit the input."""
    height, width = model.data_config["input_size"][-2:]
    block = default_block((height, width)) if block is None else _whole_block(block)
    if not 1 <= block <= min(height, width):
        raise BadSettingError(f"block must be 1 to {min(height, width)} pixels ({model.name}'s input is "
                              f"{width}×{height}), got {block}.")  # fmt: skip
    return block


def default_block(size: tuple[int, int]) -> int:
    """The region side scores use unless told: 16 pixels, or less so that the shorter side holds 8 regions (a
    32-pixel input gets 4; an 8-pixel one single pixels)."""
    return max(1, min(16, min(size) // 8))


FLOOR_MAPS = 5


def random_floor(
    model: LoadedModel,
    x: torch.Tensor | LoadedImage,
    target: int,
    *,
    maps: int = FLOOR_MAPS,
    seed: int = 0,
    steps: int = 20,
    replacement: Replacement = "blur",
    score: Score = "probability",
    block: int | None = None,
    batch: int | None = None,
) -> Curves:
    """The floor a map's scores are read against: the curves of ``maps`` random maps (seeds ``seed`` onwards),
    averaged point by point, with the spread of their areas.

    One random map is a noisy floor, the more so with regions: on the bundled cat with 16-pixel squares, eight random
    maps' deletion areas are 0.106 ± 0.014 (the first alone: 0.122), on the rocket 0.186 ± 0.087. A map whose score
    lies within that spread of the mean has not shown it beats chance. The other settings are
    :func:`deletion_insertion`'s.
    """
    model = loaded(model, "random_floor")
    if not 1 <= (whole_number(maps) or 0) <= 100:
        raise BadSettingError(f"maps must be 1 to 100, got {shown(maps)}.")
    seed = seed_number(seed)
    x = model_input(model, x)  # an image: preprocessed once for every map
    shape = tuple(x.shape[-2:])
    kwargs = dict(steps=steps, replacement=replacement, score=score, block=block, batch=batch)
    each = [deletion_insertion(model, x, random_map(shape, s), target, seed=s, **kwargs)
            for s in ((seed + i) % SEED_LIMIT for i in range(int(maps)))]  # fmt: skip
    deletion_aucs = np.array([c.deletion_auc for c in each])
    insertion_aucs = np.array([c.insertion_auc for c in each])
    first = each[0]
    return Curves(np.mean([c.fractions for c in each], axis=0), np.mean([c.deletion for c in each], axis=0),
                  np.mean([c.insertion for c in each], axis=0), float(deletion_aucs.mean()),
                  float(insertion_aucs.mean()), first.score, first.replacement, first.block, int(maps),
                  _spread(deletion_aucs), _spread(insertion_aucs))  # fmt: skip


def _spread(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def random_map(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A map of uniform noise from a generator seeded by ``seed``: scored like a real map, it is the floor that
    each score is read against."""
    return np.random.default_rng(seed_number(seed)).random(shape, dtype=np.float32)


def _rank(saliency: torch.Tensor, block: int = 1) -> tuple[torch.Tensor, int]:
    """Each pixel's region's position when the regions (``block`` × ``block`` squares from the top left) are sorted
    by the map's mean over them, largest first (stable: ties in row-major order); and the number of regions."""
    height, width = saliency.shape
    rows, cols = -(-height // block), -(-width // block)
    region = ((torch.arange(height) // block)[:, None] * cols + (torch.arange(width) // block)[None, :]).flatten()
    sums = torch.zeros(rows * cols, dtype=torch.float64).index_add_(0, region, saliency.flatten().double())
    sizes = torch.bincount(region, minlength=rows * cols).double()
    order = torch.sort(-(sums / sizes), stable=True).indices
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel())
    return position[region].view(height, width), rows * cols
