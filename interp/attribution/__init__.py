"""Attribution methods: which pixels made the model say what it said.

    >>> from interp.attribution import attribute
    >>> result = attribute(model, image, "integrated_gradients", target=282, steps=32)
    >>> result.raw.shape, result.delta            # (3, 224, 224), completeness error in logits

A method is one registered class (``METHODS``); importing this package registers them all.
"""

from interp.attribution import cam, gradient, perturbation  # noqa: F401  (register the methods)
from interp.attribution.api import attribute, enough_steps, method_rows
from interp.attribution.base import (
    METHODS,
    Attribution,
    AttributionMethod,
    MapNotFinite,
    MethodNotApplicable,
    get_method,
    method_names,
)
from interp.models.hooks import hook_count

__all__ = [
    "METHODS",
    "Attribution",
    "AttributionMethod",
    "MapNotFinite",
    "MethodNotApplicable",
    "attribute",
    "enough_steps",
    "get_method",
    "hook_count",
    "method_names",
    "method_rows",
]
