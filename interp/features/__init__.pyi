"""What ``interp.features`` offers, read by type checkers and, at run time, by ``lazy_loader`` (``__init__.py``)."""

from .objectives import KINDS, Objective, diversity
from .optimise import Step, Visualisation, objective_values, visualise
from .params import COLOUR_CORRELATION_SQRT, ImageParam
from .settings import PARAMETERISATIONS, VisualiseSettings
from .spectrum import COLUMNS, Example, Spectrum, spectrum, unit_maps
from .units import (
    FeatureMaps,
    Filters,
    Layer,
    as_grid,
    default_feature_layer,
    feature_layers,
    feature_maps,
    first_filters,
    layer_grid,
    layer_table,
    mosaic,
)

__all__ = [
    "COLOUR_CORRELATION_SQRT",
    "COLUMNS",
    "KINDS",
    "PARAMETERISATIONS",
    "Example",
    "FeatureMaps",
    "Filters",
    "ImageParam",
    "Layer",
    "Objective",
    "Spectrum",
    "Step",
    "Visualisation",
    "VisualiseSettings",
    "as_grid",
    "default_feature_layer",
    "diversity",
    "feature_layers",
    "feature_maps",
    "first_filters",
    "layer_grid",
    "layer_table",
    "mosaic",
    "objective_values",
    "spectrum",
    "unit_maps",
    "visualise",
]
