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

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
