"""Concepts: CAVs and TCAV (Kim et al. 2018) from sets of images, reproducible and tested for significance.

    >>> from interp.concepts import run_tcav, generated
    >>> report = run_tcav(model, ["layer4"], {"marker": generated.shapes_concept("marker", 30)},
    ...                   [generated.shapes_backgrounds(30, seed=s) for s in range(11)], star_images, target=3)
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
