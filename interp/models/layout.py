"""How a layer's output lies over the image: as maps ``(B, C, h, w)``, whichever way the layer holds them.

timm's CNNs give ``(B, C, h, w)``; Swin, MambaOut and the insides of ConvNeXt's blocks give ``(B, h, w, C)``;
transformers give tokens ``(B, T, D)``, the patches after any class and register tokens (:meth:`ModelSpec.token_grid`).
A 4-D output is read as channels last when its middle two sizes, not its last two, have the input's aspect.
Also the input itself: :func:`model_input` checks an image handed over already prepared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def model_input(model: LoadedModel, image: Any, *, exact: bool = False) -> torch.Tensor:
    """``image`` as the ``(C, H, W)`` tensor ``model`` reads: any image :func:`interp.load_image` takes, preprocessed
    with the model's data config; or a tensor already prepared, ``(C, H, W)`` or ``(1, C, H, W)``, as it is. A tensor
    the model cannot read is a :class:`BadSettingError` here, not torch's error from inside the network: another
    number of channels, a batch of several, integers, or another size where the size is fixed (a transformer's
    position embedding, unless timm built it with ``dynamic_img_size``; any model with ``exact``, for maps laid over
    the grid of the data config's size)."""
    if not isinstance(image, torch.Tensor):
        return model.preprocess(image)  # which reads any image form
    x = image[0] if image.dim() == 4 and image.shape[0] == 1 else image
    channels, height, width = model.data_config["input_size"]
    if x.dim() != 3:
        batch = "; give one image at a time" if image.dim() == 4 else ""
        raise BadSettingError(f"a prepared image is one ({channels}, H, W) tensor, got shape {tuple(image.shape)}"
                              f"{batch}.")  # fmt: skip
    fixed = exact or (model.spec.family == "vit" and not getattr(model.structure, "dynamic_img_size", False))
    if x.shape[0] != channels or (fixed and tuple(x.shape[1:]) != (height, width)):
        size = f"{height}×{width} images" if fixed else "images"
        raise BadSettingError(f"{model.name} takes {size} with {channels} channels, got {tuple(x.shape)}; prepare "
                              "the image with model.preprocess(image).")  # fmt: skip
    if not x.is_floating_point():
        raise BadSettingError(f"a prepared image holds normalised floats, not {x.dtype}; prepare the image with "
                              "model.preprocess(image).")  # fmt: skip
    return x


def _aspect_of(rows: int, cols: int, height: int, width: int) -> bool:
    """Whether a ``rows`` × ``cols`` grid has about the aspect of a ``height`` × ``width`` input (strides round)."""
    return abs(rows * width - cols * height) <= 0.2 * max(rows * width, cols * height)
