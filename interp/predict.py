"""Top-k predictions of a loaded model on one image."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from interp.cache import ResultCache, result_key
from interp.errors import BadSettingError, shown, whole_number
from interp.images import LoadedImage, as_loaded
from interp.models import LoadedModel
from interp.models.given import loaded
from interp.models.layout import model_input


@dataclass(frozen=True)
class ClassScore:
    """One class and its softmax probability."""

    index: int
    label: str
    prob: float


@dataclass(frozen=True)
class Prediction:
    """The ``top_k`` most probable classes, best first, and how long the forward pass took.

    Attributes:
        model: the model's name.
        scores: ``top_k`` entries, highest probability first.
        seconds: wall time of preprocessing plus the forward pass.
    """

    model: str
    scores: tuple[ClassScore, ...]
    seconds: float

    @property
    def top(self) -> ClassScore:
        return self.scores[0]

    def to_dict(self) -> dict:
        """The CLI's JSON shape: ``{"model": ..., "predictions": [{"index", "label", "prob"}, ...]}``."""
        return {
            "model": self.model,
            "predictions": [{"index": s.index, "label": s.label, "prob": s.prob} for s in self.scores],
        }


def predict(
    model: LoadedModel, image: LoadedImage | Image.Image | np.ndarray | torch.Tensor | str | Path, top_k: int = 5
) -> Prediction:
    """Classify one image.

    Args:
        model: from :func:`interp.load_model`.
        image: a :class:`LoadedImage`, or what :func:`interp.load_image` takes (a path, a PIL image, an array…); or
            a tensor already prepared, ``(C, H, W)`` or ``(1, C, H, W)`` (what ``model.preprocess`` returns).
        top_k: how many classes to return; clipped to the number of classes.
    """
    model = loaded(model, "predict")
    if (whole_number(top_k) or 0) < 1:
        raise BadSettingError(f"top_k must be a whole number, at least 1; got {shown(top_k)}.")
    if not isinstance(image, torch.Tensor):  # decoded before the clock starts, as before
        image = as_loaded(image).image
    start = time.perf_counter()
    x = model_input(model, image)[None]  # a tensor already prepared, as every other function that runs a model takes
    probs = model.run(x).float().softmax(dim=-1)[0]
    values, indices = probs.topk(min(top_k, probs.numel()))
    seconds = time.perf_counter() - start
    scores = tuple(
        ClassScore(int(i), model.class_names[int(i)], float(p)) for p, i in zip(values.tolist(), indices.tolist())
    )
    return Prediction(model.name, scores, seconds)


def cached_predict(model: LoadedModel, image: LoadedImage, cache: ResultCache, top_k: int = 5) -> Prediction:
    """:func:`predict` through the disk cache: the same model, weights and pixels are computed once."""
    key = result_key(model=model.key, image=image.digest, method="predict", params={"top_k": top_k})

    def compute() -> tuple[dict[str, np.ndarray], dict]:
        p = predict(model, image, top_k)
        indices = np.array([s.index for s in p.scores], dtype=np.int64)
        probs = np.array([s.prob for s in p.scores], dtype=np.float64)
        return {"indices": indices, "probs": probs}, {"seconds": p.seconds}

    result, _ = cache.get_or_compute(key, compute)
    scores = tuple(
        ClassScore(int(i), model.class_names[int(i)], float(p))
        for i, p in zip(result.arrays["indices"], result.arrays["probs"])
    )
    return Prediction(model.name, scores, float(result.meta["seconds"]))
