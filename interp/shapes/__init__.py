"""The ground-truth world: synthetic shapes with exact masks, boxes and a planted shortcut (see ``generator``)."""

from interp.shapes.export import write_image_folder
from interp.shapes.generator import (
    CLASSES,
    IMAGE_SIZE,
    MARKER_RATE,
    SHORTCUT_CLASS,
    SPLITS,
    ShapeSample,
    classifies_shapes,
    generate,
    marker_region,
    render,
)
from interp.shapes.truth import draw_outline, mask_in_view, pointing_hit, truth_mask

__all__ = [
    "CLASSES",
    "IMAGE_SIZE",
    "MARKER_RATE",
    "SHORTCUT_CLASS",
    "SPLITS",
    "ShapeSample",
    "classifies_shapes",
    "draw_outline",
    "generate",
    "mask_in_view",
    "pointing_hit",
    "truth_mask",
    "marker_region",
    "render",
    "write_image_folder",
]
