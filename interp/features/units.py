"""What a layer holds, as channels on a grid: the first convolution's filters and an image's feature maps.

A convolutional layer's output is ``(N, C, h, w)`` (or ``(N, h, w, C)``, turned round). A vision transformer block's
is ``(N, T, D)``: its patch tokens are put back on their grid, ``(N, D, gh, gw)``, and the class (and register) tokens
are left out (:func:`interp.models.layout.as_map`). A pooled output ``(N, D)`` is ``(N, D, 1, 1)``. Every view of this
package reads layers through :func:`as_grid`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from interp.concepts.activations import _forward_to, default_layers, resolve_layer
from interp.errors import BadSettingError, name_list, shown, whole_number
from interp.images import LoadedImage, image_list
from interp.models.given import loaded
from interp.models.hooks import first_output, hooked
from interp.models.layout import as_map
from interp.models.loading import LoadedModel


def as_grid(model: LoadedModel, output: torch.Tensor, layer: str) -> torch.Tensor:
    """A layer's output as ``(N, C, h, w)`` (see the module's docstring); a sentence for shapes that are not maps."""
    model = loaded(model, "as_grid")
    if output.ndim == 2:
        return output[:, :, None, None]
    grid = as_map(model, output)
    if grid is not None:
        return grid
    if output.ndim == 3:
        raise BadSettingError(
            f"{layer} of {model.name} gives {output.shape[1]} tokens, which do not form a square grid; pick a "
            "block of the network (blocks.N)."
        )
    raise BadSettingError(f"{layer} of {model.name} gives an output of shape {tuple(output.shape)}, not feature maps; "
                          "pick a convolution or a block.")  # fmt: skip


def feature_layers(model: LoadedModel) -> list[str]:
    """Layers worth offering in a picker: the network's top-level modules and the blocks of its body (the names
    with at most one dot), leaving out activations, dropouts and the classifier's pooling."""
    model = loaded(model, "feature_layers")
    skip = ("act", "drop", "global_pool", "head_drop", "fc_norm", "pre_logits")
    names = [n for n in model.layer_names() if n.count(".") <= 1 and not n.split(".")[-1].startswith(skip)]
    return names or list(model.layer_names())


@dataclass(frozen=True)
class Layer:
    """One layer of a network, as ``--layer`` options and layer pickers name it.

    Attributes:
        name: the dotted module path.
        kind: the module's class name (``Conv2d``, ``Sequential``, ``Block``…).
        output: the shape of its (first) output for one image, without the batch axis: ``(C, h, w)`` for a
            convolution, ``(tokens, D)`` for a transformer block, ``(classes,)`` for the classifier; ``None`` where the
            model's forward pass never runs the module.
        params: parameters the module holds, its sub-modules' included.
    """

    name: str
    kind: str
    output: tuple[int, ...] | None
    params: int


def layer_table(model: LoadedModel, names: Sequence[str] | None = None) -> list[Layer]:
    """``names`` (default :func:`feature_layers`) in the network's order, with their output shapes from one pass of
    a blank image at the model's input size."""
    model = loaded(model, "layer_table")
    names = feature_layers(model) if names is None else name_list(names, "layers")
    modules = {name: model.layer(name) for name in names}
    shapes: dict[str, tuple[int, ...]] = {}

    def shape_of(name: str):
        def keep(module, inputs, output) -> None:  # the shape alone: nothing held, the pass unchanged
            shapes.setdefault(name, tuple(first_output(output).shape[1:]))

        return keep

    x = torch.zeros(1, *model.data_config["input_size"], device=model.device)
    with model.exclusive() as net, torch.inference_mode(), hooked() as handles:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(shape_of(name)))
        net(x)
    return [
        Layer(name, type(module).__name__, shapes.get(name), sum(p.numel() for p in module.parameters()))
        for name, module in modules.items()
    ]


def default_feature_layer(model: LoadedModel) -> str:
    """A layer about halfway through the network: its units respond to textures and parts a person can see."""
    model = loaded(model, "default_feature_layer")
    return default_layers(model)[0]


@dataclass(frozen=True)
class Filters:
    """The first convolution's filters, as pictures.

    Attributes:
        layer: the convolution's module path.
        tiles: ``(K, kh, kw, 3)`` ``uint8``, each filter scaled on its own around mid-grey (0 weight is grey 128).
        norms: ``(K,)`` the L2 norm of each filter's weights (which filters are strong).
    """

    layer: str
    tiles: np.ndarray
    norms: np.ndarray


def first_filters(model: LoadedModel) -> Filters:
    """The filters of the first convolution that reads the three colour channels (a ViT's patch embedding too)."""
    model = loaded(model, "first_filters")
    for name, module in model.structure.named_modules():
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            w = module.weight.detach().float().cpu()  # (K, 3, kh, kw); parameters are frozen, reading is safe
            scale = w.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
            tiles = ((w / scale) * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            return Filters(name, tiles, w.flatten(1).norm(dim=1).numpy())
    raise BadSettingError(f"{model.name} has no convolution reading the image's colours; it has no filters to show.")


@dataclass(frozen=True)
class FeatureMaps:
    """The strongest channels of a layer for one image.

    Attributes:
        layer: the module path.
        channels: ``(K,)`` channel indices, strongest mean activation first.
        means: ``(K,)`` their mean activation over the grid.
        maps: ``(K, h, w)`` float32 activations.
        total: how many channels the layer has.
        tokens: whether the grid is a transformer's patch tokens.
    """

    layer: str
    channels: np.ndarray
    means: np.ndarray
    maps: np.ndarray
    total: int
    tokens: bool


def layer_grid(model: LoadedModel, layer: str, images: list[LoadedImage]) -> torch.Tensor:
    """``(N, C, h, w)`` activations of ``layer`` for ``images`` (each a :class:`LoadedImage` or what
    :func:`interp.load_image` takes), from one pass that stops at the layer."""
    model = loaded(model, "layer_grid")
    return as_grid(model, _output(model, layer, images), layer).cpu()


def _output(model: LoadedModel, layer: str, images: list[LoadedImage]) -> torch.Tensor:
    images = image_list(images)
    if not images:
        raise BadSettingError("a layer's activations need at least one image.")
    module = resolve_layer(model, layer)
    x = model.batch_of([model.pixels(im.image) for im in images])
    return _forward_to(model, {layer: module}, x)[layer].float()


def feature_maps(model: LoadedModel, image: LoadedImage, layer: str, top_k: int = 16) -> FeatureMaps:
    """The ``top_k`` channels of ``layer`` with the highest mean activation on ``image`` (a :class:`LoadedImage` or
    what :func:`interp.load_image` takes)."""
    model = loaded(model, "feature_maps")
    if (whole_number(top_k) or 0) < 1:
        raise BadSettingError(f"top_k is how many channels to show, a whole number of at least 1; got {shown(top_k)}.")
    out = _output(model, layer, [image])
    grid = as_grid(model, out, layer).cpu()[0]
    means = grid.mean(dim=(1, 2))
    order = torch.argsort(means, descending=True, stable=True)[:top_k]
    return FeatureMaps(layer, order.numpy(), means[order].numpy(), grid[order].numpy(), int(grid.shape[0]), out.ndim == 3)


def mosaic(tiles: np.ndarray, columns: int, gap: int = 1, scale: int = 1) -> np.ndarray:
    """``(K, h, w, 3)`` ``uint8`` tiles as one ``(H, W, 3)`` picture, ``columns`` wide, white gaps, each tile
    enlarged ``scale`` times (nearest neighbour, so a 7×7 filter stays seven blocks wide)."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise BadSettingError(f"a mosaic is made of (K, h, w, 3) tiles, got an array of shape {tiles.shape}.")
    for what, value, least in (("columns", columns, 1), ("scale", scale, 1), ("gap", gap, 0)):
        number = whole_number(value)
        if number is None or number < least:
            raise BadSettingError(f"{what} is a whole number of at least {least}; got {shown(value)}.")
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    k, h, w, _ = tiles.shape
    rows = -(-k // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return out
