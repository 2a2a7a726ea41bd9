"""What ``interp.concepts`` offers, read by type checkers and, at run time, by ``lazy_loader`` (``__init__.py``)."""

from . import generated
from .activations import (
    activations,
    activations_by_layer,
    class_gradients,
    class_gradients_by_layer,
    default_layers,
    resolve_layer,
)
from .api import TCAVReport, run_tcav, seconds_left
from .cav import CAV, CLASSIFIERS
from .from_files import FileActivations, file_activations
from .library import ConceptLibrary, ConceptSet, LibraryError, VisitorLibrary
from .tcav import ConceptScore, canonical, tcav, tcav_score

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
