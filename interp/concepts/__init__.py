"""Concepts: CAVs and TCAV (Kim et al. 2018) from sets of images, reproducible and tested for significance.

    >>> from interp.concepts import run_tcav, generated
    >>> report = run_tcav(model, ["layer4"], {"marker": generated.shapes_concept("marker", 30)},
    ...                   [generated.shapes_backgrounds(30, seed=s) for s in range(11)], star_images, target=3)
"""

from interp.concepts import generated
from interp.concepts.activations import (
    activations,
    activations_by_layer,
    class_gradients,
    class_gradients_by_layer,
    default_layers,
    resolve_layer,
)
from interp.concepts.api import TCAVReport, run_tcav, seconds_left
from interp.concepts.cav import CAV, CLASSIFIERS
from interp.concepts.from_files import FileActivations, file_activations
from interp.concepts.library import ConceptLibrary, ConceptSet, LibraryError, VisitorLibrary
from interp.concepts.tcav import ConceptScore, canonical, tcav, tcav_score

__all__ = [
    "CAV",
    "CLASSIFIERS",
    "ConceptLibrary",
    "ConceptScore",
    "ConceptSet",
    "FileActivations",
    "LibraryError",
    "VisitorLibrary",
    "TCAVReport",
    "activations",
    "activations_by_layer",
    "canonical",
    "class_gradients",
    "class_gradients_by_layer",
    "default_layers",
    "file_activations",
    "generated",
    "resolve_layer",
    "run_tcav",
    "seconds_left",
    "tcav",
    "tcav_score",
]
