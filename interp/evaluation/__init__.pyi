"""What ``interp.evaluation`` offers, read by type checkers and, at run time, by ``lazy_loader`` (``__init__.py``)."""

from .api import grid_curves, map_curves, map_randomisation
from .choices import BLOCKS, REPLACEMENTS
from .dataset import (
    EvaluationProgress,
    evaluate_dataset,
    load_failures,
    load_scores,
    load_unreadable,
    summarise,
    verdict,
)
from .faithfulness import (
    FLOOR_MAPS,
    Curves,
    default_block,
    deletion_insertion,
    random_floor,
    random_map,
)
from .localisation import as_values, boxes_mask, centre_hit, energy_inside, object_mask, pointing
from .sanity import RandomisationCheck, RandomisedStep, cascade_layers, cascading_randomisation
from .scoreboard import score_line, scoreboard, scoreboard_sentence

__all__ = [
    "BLOCKS",
    "FLOOR_MAPS",
    "REPLACEMENTS",
    "Curves",
    "EvaluationProgress",
    "RandomisationCheck",
    "RandomisedStep",
    "as_values",
    "boxes_mask",
    "cascade_layers",
    "cascading_randomisation",
    "centre_hit",
    "default_block",
    "deletion_insertion",
    "energy_inside",
    "grid_curves",
    "evaluate_dataset",
    "load_failures",
    "load_scores",
    "load_unreadable",
    "map_curves",
    "map_randomisation",
    "object_mask",
    "pointing",
    "random_floor",
    "random_map",
    "score_line",
    "scoreboard",
    "scoreboard_sentence",
    "summarise",
    "verdict",
]
