"""Scores of maps the page and the CLI already computed, through the disk cache like the maps themselves."""

from __future__ import annotations

import numpy as np

from interp.attribution import Attribution
from interp.cache import ResultCache, result_key
from interp.evaluation.faithfulness import Curves, deletion_insertion, random_map
from interp.images import LoadedImage
from interp.models import LoadedModel

FLOOR_SEED = 0


def map_curves(
    model: LoadedModel, image: LoadedImage, result: Attribution | None, target: int, *, steps: int = 20,
    replacement: str = "blur", cache: ResultCache | None = None,
) -> Curves:  # fmt: skip
    """Deletion and insertion curves of ``result``'s map (``None``: of a random map, the floor) for ``target``,
    read from ``cache`` when computed before for the same model, pixels, map settings, steps and replacement."""
    what = "random" if result is None else result.method
    settings = {"target": int(target), "steps": int(steps), "replacement": replacement, "seed": FLOOR_SEED}
    if result is not None:
        settings["map"] = result.params
    key = result_key(model=model.key, image=image.digest, method=f"deletion_insertion:{what}", params=settings)
    found = cache.get(key) if cache is not None else None
    if found is not None:
        a, m = found.arrays, found.meta
        return Curves(a["fractions"], a["deletion"], a["insertion"], m["deletion_auc"], m["insertion_auc"],
                      m["score"], m["replacement"])  # fmt: skip
    x = model.preprocess(image.image)
    saliency = random_map(tuple(x.shape[-2:]), FLOOR_SEED) if result is None else result.map
    curves = deletion_insertion(model, x, saliency, int(target), steps=steps, replacement=replacement)
    if cache is not None:
        arrays = {"fractions": curves.fractions, "deletion": curves.deletion, "insertion": curves.insertion}
        meta = {"deletion_auc": curves.deletion_auc, "insertion_auc": curves.insertion_auc, "score": curves.score,
                "replacement": curves.replacement}  # fmt: skip
        cache.put(key, {k: np.asarray(v) for k, v in arrays.items()}, meta)
    return curves
