"""How far to trust an attribution map: scores computed from the model, the input, the map and the target.

    >>> from interp.evaluation import deletion_insertion
    >>> curves = deletion_insertion(model, x, result.map, target=282, steps=20, replacement="blur", block=16)
    >>> curves.deletion_auc, curves.insertion_auc        # lower deletion and higher insertion is better
    >>> random_floor(model, x, 282)        # the floor beside it: 5 random maps' mean curves, and their spread

The scores: deletion and insertion (Petsiuk et al. 2018) with their random-map floor, the cascading
model-randomisation check (Adebayo et al. 2018), and the pointing game and energy inside the object where a mask or
boxes give the answer; per dataset, their mean and 95% interval per method. The Attribution page, the Failures page's
"Which method to trust" tab and ``python -m interp evaluate`` read them through the result cache (``api``).
"""

from interp.evaluation.api import grid_curves, map_curves, map_randomisation
from interp.evaluation.dataset import EvaluationProgress, evaluate_dataset, load_scores, summarise
from interp.evaluation.faithfulness import (
    BLOCKS,
    FLOOR_MAPS,
    REPLACEMENTS,
    Curves,
    default_block,
    deletion_insertion,
    random_floor,
    random_map,
)
from interp.evaluation.localisation import as_values, boxes_mask, centre_hit, energy_inside, pointing
from interp.evaluation.sanity import RandomisationCheck, RandomisedStep, cascade_layers, cascading_randomisation

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
    "load_scores",
    "map_curves",
    "map_randomisation",
    "pointing",
    "random_floor",
    "random_map",
    "summarise",
]
