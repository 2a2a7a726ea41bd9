"""How a layer's output lies over the image: as maps ``(B, C, h, w)``, whichever way the layer holds them.

timm's CNNs give ``(B, C, h, w)``; Swin, MambaOut and the insides of ConvNeXt's blocks give ``(B, h, w, C)``;
transformers give tokens ``(B, T, D)``, the patches after any class and register tokens (:meth:`ModelSpec.token_grid`).
A 4-D output is read as channels last when its middle two sizes, not its last two, have the input's aspect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from interp.errors import BadSettingError

if TYPE_CHECKING:
    from interp.models.loading import LoadedModel


def channels_last(model: LoadedModel, output: torch.Tensor) -> bool:
    """Whether a 4-D layer output is ``(B, h, w, C)``: its sizes 1 and 2 have the input's aspect and sizes 2 and 3 do
    not (a 7×7 map of 7 channels counts as channels first)."""
    if output.dim() != 4:
        return False
    _, height, width = model.data_config["input_size"]
    return not _aspect_of(output.shape[2], output.shape[3], height, width) and _aspect_of(
        output.shape[1], output.shape[2], height, width
    )


def as_map(model: LoadedModel, output: torch.Tensor) -> torch.Tensor | None:
    """A layer's output as ``(B, C, h, w)`` over the image; ``None`` for tokens that form no grid and other shapes.

    Raises:
        BadSettingError: tokens of a model that keeps them out of row order (Hiera); the message says so."""
    if output.dim() == 3:
        if hasattr(model.structure, "unroll"):
            raise BadSettingError(
                f"{model.name} keeps its tokens in mask-unit order (Hiera's unrolling), not row by row, so a layer of "
                "tokens cannot be laid over the image; choose a layer whose output is a map."
            )
        return model.spec.token_grid(output)
    if output.dim() != 4:
        return None
    return output.permute(0, 3, 1, 2) if channels_last(model, output) else output


def _aspect_of(rows: int, cols: int, height: int, width: int) -> bool:
    """Whether a ``rows`` × ``cols`` grid has about the aspect of a ``height`` × ``width`` input (strides round)."""
    return abs(rows * width - cols * height) <= 0.2 * max(rows * width, cols * height)
