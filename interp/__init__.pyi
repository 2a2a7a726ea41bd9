"""What ``import interp`` offers, read by type checkers and, at run time, by ``lazy_loader`` (``__init__.py``)."""

# The engine's parts, as interp.shapes.generate(…) or from interp.attribution import attribute
from . import attention, attribution, concepts, datasets, evaluation, features, shapes, text
from .cache import CachedResult, ResultCache, result_key
from .config import Settings, resolve_device
from .errors import BadImageError, InterpError, UnknownModelError, WeightsMismatchError, WeightsUnavailableError
from .images import LoadedImage, image_from_array, load_image
from .models import (
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
from .predict import ClassScore, Prediction, predict
from .samples import DEFAULT_SAMPLE, SAMPLES, load_sample, sample_names

__all__ = [
    "attention",
    "attribution",
    "concepts",
    "datasets",
    "evaluation",
    "features",
    "shapes",
    "text",
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
