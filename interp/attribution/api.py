"""The one call pages and the CLI use: attribute an image, through the disk cache when one is given."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from interp.attribution.base import METHODS, Attribution, get_method
from interp.cache import ResultCache, result_key
from interp.images import LoadedImage
from interp.models import LoadedModel


def attribute(
    model: LoadedModel,
    image: LoadedImage | Image.Image | torch.Tensor,
    method: str,
    target: int | None = None,
    *,
    cache: ResultCache | None = None,
    **params: Any,
) -> Attribution:
    """Explain ``model``'s score for ``target`` on ``image`` with ``method``.

    Args:
        model: from :func:`interp.load_model`.
        image: a loaded image, a PIL image (both preprocessed with the model's data config), or a preprocessed
            ``(C, H, W)`` tensor.
        method: a registry name (``interp.attribution.METHODS``).
        target: class index; ``None`` explains the top prediction.
        cache: when given, a result computed before for the same model, pixels, method, target and settings is
            returned without computing (``extras["cached"]`` is then ``True``).
        **params: the method's settings (see its ``defaults``).
    """
    m = get_method(method, **params)
    x: torch.Tensor | None = None
    if target is None:
        x = _as_input(model, image)
        target = int(model.run(x[None]).argmax(-1))
    if cache is None or not isinstance(image, LoadedImage):
        return m.attribute(model, _as_input(model, image) if x is None else x, target)
    settings = m.resolved_params(model)
    key = result_key(model=model.key, image=image.digest, method=method, params={**settings, "target": target})
    found = cache.get(key)
    if found is not None:
        meta = found.meta
        return Attribution(
            method, target, found.arrays["raw"], meta["params"], meta["seconds"], meta["delta"],
            {**meta["extras"], "cached": True},
        )  # fmt: skip
    result = m.attribute(model, _as_input(model, image) if x is None else x, target)
    meta = {"params": result.params, "seconds": result.seconds, "delta": result.delta, "extras": result.extras}
    cache.put(key, {"raw": result.raw}, meta)
    return result


def method_rows(model: LoadedModel | None = None) -> list[dict[str, Any]]:
    """Registry rows for pickers and ``python -m interp methods``: name, title, summary, paper, kind, the settings
    schema (each row's name, kind, default, range or choices, help), and, given a model, why the method does not
    apply to it (``None`` when it does)."""
    rows = []
    for name, cls in METHODS.items():
        row = {
            "name": name,
            "title": cls.title,
            "summary": cls.summary,
            "paper": cls.paper,
            "kind": cls.kind,
            "signed": cls.signed,
            "settings": [row.describe() for row in cls.schema()],
        }
        if model is not None:
            row["unavailable"] = cls().applies_to(model)
        rows.append(row)
    return rows


def _as_input(model: LoadedModel, image: LoadedImage | Image.Image | torch.Tensor) -> torch.Tensor:
    if isinstance(image, LoadedImage):
        return model.preprocess(image.image)
    if isinstance(image, Image.Image):
        return model.preprocess(image)
    if isinstance(image, torch.Tensor):
        return image[0] if image.dim() == 4 else image
    if isinstance(image, np.ndarray):
        return model.preprocess(Image.fromarray(image))
    raise TypeError(f"cannot attribute a {type(image).__name__}; pass a LoadedImage, a PIL image or a tensor.")
