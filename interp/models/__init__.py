"""Models: the spec table, weight sources, and ``load_model`` (the one way to get a model)."""

from interp.models.gate import GateMisuse, ModelGate
from interp.models.loading import LoadedModel, WeightsInfo, availability, describe, fingerprint, load_model
from interp.models.specs import (
    DEFAULT_MODEL,
    SPECS,
    ModelSpec,
    get_spec,
    is_timm_name,
    parameter_count,
    suggest_names,
    text_model_note,
)
from interp.models.weights import Availability, hub_reachable, read_weights_file

__all__ = [
    "DEFAULT_MODEL",
    "SPECS",
    "Availability",
    "GateMisuse",
    "LoadedModel",
    "ModelGate",
    "ModelSpec",
    "WeightsInfo",
    "availability",
    "describe",
    "fingerprint",
    "get_spec",
    "hub_reachable",
    "is_timm_name",
    "load_model",
    "parameter_count",
    "read_weights_file",
    "suggest_names",
    "text_model_note",
]
