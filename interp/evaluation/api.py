"""Scores of maps the page and the CLI already computed, through the disk cache like the maps themselves."""

from __future__ import annotations

import numpy as np

from interp.attribution import Attribution
from interp.cache import ResultCache, computed_once, result_key
from interp.errors import BadSettingError, check_class, seed_number
from interp.evaluation.faithfulness import FLOOR_MAPS, Curves, deletion_insertion, model_block, random_floor
from interp.evaluation.sanity import RandomisationCheck, RandomisedStep, cascading_randomisation
from interp.images import LoadedImage, as_loaded
from interp.models import LoadedModel
from interp.models.given import loaded

FLOOR_SEED = 0


def map_curves(
    model: LoadedModel, image: LoadedImage, result: Attribution | None, target: int, *, steps: int = 20,
    replacement: str = "blur", block: int | None = None, cache: ResultCache | None = None, batch: int | None = None,
) -> Curves:  # fmt: skip
    """Deletion and insertion curves of ``result``'s map (``None``: the floor, :func:`random_floor` of
    ``FLOOR_MAPS`` random maps) for ``target``, read from ``cache`` when computed before for the same model, pixels,
    map settings, steps, replacement and region side (``block``; by default
    :func:`~interp.evaluation.faithfulness.default_block` of the model's input)."""
    model = loaded(model, "map_curves")
    image, result = as_loaded(image), None if result is None else _attribution(result)
    target = check_class(target, model.num_classes, model.name, model.class_names)
    block = model_block(model, block)
    what = "random" if result is None else result.method
    settings = {"target": int(target), "steps": int(steps), "replacement": replacement, "seed": FLOOR_SEED}
    if block != 1:  # keys of single-pixel scores, the only kind before regions, stay as they were
        settings["block"] = block
    if result is not None:
        settings["map"] = result.params
    else:
        settings["maps"] = FLOOR_MAPS
    key = result_key(model=model.key, image=image.digest, method=f"deletion_insertion:{what}", params=settings)
    with computed_once(cache, key) as found:
        if found is None:
            return _curves(model, image, result, int(target), steps, replacement, block, batch, cache, key)
        a, m = found.arrays, found.meta
        return Curves(a["fractions"], a["deletion"], a["insertion"], m["deletion_auc"], m["insertion_auc"],
                      m["score"], m["replacement"], m.get("block", 1), m.get("maps", 1),
                      m.get("deletion_spread", 0.0), m.get("insertion_spread", 0.0))  # fmt: skip


def _curves(
    model: LoadedModel, image: LoadedImage, result: Attribution | None, target: int, steps: int, replacement: str,
    block: int, batch: int | None, cache: ResultCache | None, key: str,
) -> Curves:  # fmt: skip
    x = model.preprocess(image.image)
    kw = {"steps": steps, "replacement": replacement, "block": block, "batch": batch}
    if result is None:
        curves = random_floor(model, x, target, maps=FLOOR_MAPS, seed=FLOOR_SEED, **kw)
    else:
        curves = deletion_insertion(model, x, result.map, target, **kw)
    if cache is not None:
        arrays = {"fractions": curves.fractions, "deletion": curves.deletion, "insertion": curves.insertion}
        meta = {"deletion_auc": curves.deletion_auc, "insertion_auc": curves.insertion_auc, "score": curves.score,
                "replacement": curves.replacement, "block": curves.block, "maps": curves.maps,
                "deletion_spread": curves.deletion_spread, "insertion_spread": curves.insertion_spread}  # fmt: skip
        cache.put(key, {k: np.asarray(v) for k, v in arrays.items()}, meta)
    return curves


def _attribution(result: object) -> Attribution:
    if not isinstance(result, Attribution):
        raise BadSettingError(f"a map is scored from what attribute(model, image, method, target) returns; got "
                              f"{type(result).__name__}.")  # fmt: skip
    return result


def grid_curves(
    model: LoadedModel, image: LoadedImage, results: list[Attribution], *, steps: int = 20, replacement: str = "blur",
    block: int | None = None, cache: ResultCache | None = None,
) -> tuple[dict[int, Curves], list[Curves]]:  # fmt: skip
    """The curves of every map of a grid and a random map's per class, with the memory budget read once for all of
    them (a read per map cost a fifth of each map's scoring on EfficientNet-Lite0)."""
    model = loaded(model, "grid_curves")
    from interp.attribution.memory import forward_batch_size

    image = as_loaded(image)
    results = [_attribution(r) for r in ([results] if isinstance(results, Attribution) else results)]

    x = model.preprocess(image.image)[None]
    batch = forward_batch_size(model, x, 2 * (steps + 1))
    kw = {"steps": steps, "replacement": replacement, "block": block, "cache": cache, "batch": batch}
    floors = {t: map_curves(model, image, None, t, **kw) for t in dict.fromkeys(r.target for r in results)}
    return floors, [map_curves(model, image, r, r.target, **kw) for r in results]


def map_randomisation(
    model: LoadedModel, image: LoadedImage, result: Attribution, *, seed: int = 0, cache: ResultCache | None = None
) -> RandomisationCheck:
    """The cascading randomisation check of ``result``'s method, image, class and settings, through ``cache``."""
    model = loaded(model, "map_randomisation")
    image, result = as_loaded(image), _attribution(result)
    settings = {"target": result.target, "map": result.params, "seed": seed_number(seed)}
    key = result_key(model=model.key, image=image.digest, method=f"randomisation:{result.method}", params=settings)
    with computed_once(cache, key) as found:
        if found is None:
            return _randomisation(model, image, result, seed, cache, key)
        m = found.meta
        steps = tuple(RandomisedStep(layer, float(sp), float(ss)) for layer, sp, ss in
                      zip(m["layers"], found.arrays["spearman"], found.arrays["ssim"]))  # fmt: skip
        return RandomisationCheck(result.method, result.target, steps, m["mean_spearman"], m["flagged"], m["sentence"])


def _randomisation(model: LoadedModel, image: LoadedImage, result: Attribution, seed: int, cache: ResultCache | None,
                   key: str) -> RandomisationCheck:  # fmt: skip
    check = cascading_randomisation(model, model.preprocess(image.image), result.method, result.target,
                                    params=_settings_of(result), seed=seed)  # fmt: skip
    if cache is not None:
        arrays = {"spearman": np.array([s.spearman for s in check.steps]), "ssim": np.array([s.ssim for s in check.steps])}
        meta = {"layers": [s.layer for s in check.steps], "mean_spearman": check.mean_spearman,
                "flagged": check.flagged, "sentence": check.sentence}  # fmt: skip
        cache.put(key, arrays, meta)
    return check


def _settings_of(result: Attribution) -> dict:
    """The settings a result was computed with, as the method takes them again (a resolved CAM layer included)."""
    from interp.attribution import METHODS

    names = {s.name for s in METHODS[result.method].schema()}
    return {k: v for k, v in result.params.items() if k in names}
