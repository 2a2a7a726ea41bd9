"""The first check of every API function that runs an image model: that it was given one ``load_model`` returned."""

from __future__ import annotations

from interp.errors import not_loaded
from interp.models.loading import LoadedModel


def loaded(model: object, what: str) -> LoadedModel:
    """``model`` when it is a :class:`LoadedModel`, else one sentence naming ``what`` (the function) and how to get
    one: a model's name is loaded with ``interp.load_model``, a torch network is wrapped by giving its weights to it,
    a text model belongs to ``interp.text``'s functions."""
    if isinstance(model, LoadedModel):
        return model
    raise not_loaded(model, what, "interp.load_model",
                     "give its weights to interp.load_model(its timm name, weights=net.state_dict())")  # fmt: skip
