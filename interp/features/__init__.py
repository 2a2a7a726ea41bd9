"""What a unit of the network responds to: its filters and feature maps, the image that drives it hardest
(activation maximisation), and the dataset's images across its spectrum.

    >>> import interp
    >>> from interp.features import Objective, VisualiseSettings, visualise, spectrum
    >>> model = interp.load_model("efficientnet_lite0")
    >>> v = visualise(model, Objective("channel", 5, "blocks.3"), VisualiseSettings(param="fft"))
    >>> v.images.shape                                   # (batch, size, size, 3) uint8
    (1, 128, 128, 3)
    >>> s = spectrum(model, Objective("channel", 5, "blocks.3"), [interp.load_sample(n) for n in interp.sample_names()])
    >>> [e.name for e in s.columns["maximum"]]           # the photos that drive the channel most, lowest first
"""

from interp.features.objectives import KINDS, Objective, diversity
from interp.features.optimise import Step, Visualisation, VisualiseSettings, objective_values, visualise
from interp.features.params import COLOUR_CORRELATION_SQRT, PARAMETERISATIONS, ImageParam
from interp.features.spectrum import COLUMNS, Example, Spectrum, spectrum, unit_maps
from interp.features.units import (
    FeatureMaps,
    Filters,
    as_grid,
    default_feature_layer,
    feature_layers,
    feature_maps,
    first_filters,
    layer_grid,
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
    "mosaic",
    "objective_values",
    "spectrum",
    "unit_maps",
    "visualise",
]
