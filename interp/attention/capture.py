"""Capture a vision transformer's attention: every layer, every head, optionally with its gradient for a class.

timm's attention modules compute attention with ``F.scaled_dot_product_attention`` when their ``fused_attn`` flag
is on, and then the weights never exist as a tensor, so a hook sees nothing. :func:`capture` turns the flag off
for one forward pass, with the model's lock held, and restores it in ``finally``; the weights are read from the
``attn_drop`` module that the unfused path applies right after the softmax (an identity in eval mode).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from interp.errors import BadSettingError, InterpError, check_class
from interp.images import LoadedImage
from interp.models.given import loaded
from interp.models.hooks import hooked
from interp.models.layout import model_input
from interp.models.loading import LoadedModel


class NotAViTError(InterpError, ValueError):
    """The model has no attention layers that we can read (it is a CNN, or its attention is not timm's kind)."""


CAPTURE = "interp.attention.capture(model, image)"
"""What makes an :class:`AttentionCapture`, as the maps' and statistics' sentences name it."""


@dataclass(frozen=True)
class AttentionCapture:
    """The attention of one image, as the model computed it.

    Attributes:
        attn: ``(L, H, T, T)`` float32, layer × head × query token × key token; every row sums to 1.
        grads: ``(L, H, T, T)`` gradient of the ``target`` logit with respect to ``attn``; ``None`` without a target.
        target: the class whose gradient ``grads`` holds, or ``None``.
        logits: ``(K,)`` the model's output for the image.
        prefix_tokens: tokens before the patch grid (class, distillation and register tokens).
        has_cls: whether token 0 is a class token whose row the model reads (``False`` for average-pooled ViTs).
        grid: ``(rows, cols)`` of patches; ``T == prefix_tokens + rows * cols``.
        patch_px: ``(height, width)`` of one patch in pixels of the model's input (input size over grid).
    """

    attn: np.ndarray
    grads: np.ndarray | None
    target: int | None
    logits: np.ndarray
    prefix_tokens: int
    has_cls: bool
    grid: tuple[int, int]
    patch_px: tuple[float, float]

    @property
    def layers(self) -> int:
        return self.attn.shape[0]

    @property
    def heads(self) -> int:
        return self.attn.shape[1]

    @property
    def tokens(self) -> int:
        return self.attn.shape[2]

    @property
    def prefix_name(self) -> str:
        """The prefix tokens in words, for a sentence: ``"the class token"`` or ``"the 5 prefix tokens"``."""
        if self.has_cls and self.prefix_tokens == 1:
            return "the class token"
        return f"the {self.prefix_tokens} prefix tokens"

    def token_name(self, index: int) -> str:
        """``"CLS"``, ``"prefix 2"`` or ``"patch (r, c)"`` for token ``index``."""
        if index < self.prefix_tokens:
            return "CLS" if index == 0 and self.has_cls else f"prefix {index}"
        row, col = divmod(index - self.prefix_tokens, self.grid[1])
        return f"patch ({row}, {col})"


_FOUND: weakref.WeakKeyDictionary[torch.nn.Module, tuple[torch.nn.Module, ...]] = weakref.WeakKeyDictionary()


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The attention modules of a timm ViT-style model, in depth order (those with ``fused_attn`` and ``attn_drop``).

    Found once per model (a loaded model's structure does not change): walking every module costs a tenth of a
    small ViT's forward pass."""
    found = _FOUND.get(model)
    if found is None:
        found = tuple(
            m
            for m in model.modules()
            if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), torch.nn.Module)
            and hasattr(m, "num_heads")
        )  # fmt: skip
        _FOUND[model] = found
    return list(found)


def check_vit(model: LoadedModel) -> list[torch.nn.Module]:
    """The model's attention modules; raises :class:`NotAViTError` with a sentence if it has none we can read."""
    net = model.structure
    mods = attention_modules(net)
    if not mods or not hasattr(net, "patch_embed") or not hasattr(net, "num_prefix_tokens"):
        raise NotAViTError(
            f"{model.name} is not a vision transformer whose attention can be read; pick a ViT or DeiT "
            "(for example shapes_vit offline, or vit_small_patch16_224 from the hub)."
        )
    return mods


@contextlib.contextmanager
def unfused_attention(modules: list[torch.nn.Module]) -> Iterator[None]:
    """Turn timm's fused attention off for the block and restore every flag as it was, also on an exception."""
    saved = [m.fused_attn for m in modules]
    try:
        for m in modules:
            m.fused_attn = False
        yield
    finally:
        for m, flag in zip(modules, saved, strict=True):
            m.fused_attn = flag


def layout(model: LoadedModel, tokens: int, input_hw: tuple[int, int]) -> tuple[int, bool, tuple[int, int], tuple[float, float]]:
    """``(prefix_tokens, has_cls, grid, patch_px)`` read from the model itself, checked against the token count.

    A patch's size in pixels is the input size over the grid: for hybrid ViTs (a CNN stem before the patch
    embedding) that is the stem's stride times the patch size, not the patch size alone.
    """
    net = model.structure
    prefix = int(net.num_prefix_tokens)
    grid = tuple(int(g) for g in net.patch_embed.grid_size)
    has_cls = getattr(net, "cls_token", None) is not None and getattr(net, "global_pool", "token") == "token"
    patch_px = (input_hw[0] / grid[0], input_hw[1] / grid[1])
    if prefix + grid[0] * grid[1] != tokens:
        raise NotAViTError(
            f"{model.name} has {tokens} tokens, not {prefix} prefix tokens plus a {grid[0]}×{grid[1]} grid; "
            "its attention cannot be laid over the image."
        )
    return prefix, has_cls, (grid[0], grid[1]), patch_px


def capture(
    model: LoadedModel, x: torch.Tensor | LoadedImage | Image.Image | np.ndarray | str | Path, target: int | None = None
) -> AttentionCapture:
    """Run ``x`` once and keep every layer's attention (and its gradient for ``target``).

    Args:
        model: a ViT-style model from :func:`interp.load_model`; the call holds its gate alone while the fused
            attention flag is off and the hooks are on.
        x: ``(1, 3, H, W)`` or ``(3, H, W)`` preprocessed image (moved to the model's device); or an image as
            :func:`interp.load_image` takes it (a :class:`LoadedImage`, path, PIL image, array…), preprocessed here
            with the model's data config.
        target: class index whose logit is differentiated with respect to every attention map (for gradient-
            weighted rollout and Chefer et al.'s relevance); ``None`` to skip the backward pass.
    """
    model = loaded(model, "capture")
    mods = check_vit(model)
    if isinstance(x, np.ndarray) and x.ndim == 4:  # a prepared batch of one, as NumPy holds it
        x = torch.as_tensor(x)
    # an image is preprocessed here; a prepared tensor must be the size the patch grid (layout) is laid out for
    x = model_input(model, x, exact=True)[None].to(model.device)
    if not torch.isfinite(x).all():
        raise BadSettingError("the input holds NaN or infinite values; its attention would be NaN.")
    if target is not None:
        target = check_class(target, model.num_classes, model.name, model.class_names)
    kept: list[torch.Tensor] = []

    def keep(module, inputs, output):
        kept.append(output)

    grad_mode = torch.enable_grad() if target is not None else torch.inference_mode()
    drops = [m.attn_drop for m in mods]
    with model.exclusive(), unfused_attention(mods), grad_mode:
        with hooked(*(d.register_forward_hook(keep) for d in drops)):
            inp = x.detach().requires_grad_(target is not None)
            logits = model.model(inp)
        if any(a.shape[-2] != a.shape[-1] for a in kept):  # CaiT: only its class-attention layers are readable
            queries, keys = next(a.shape[-2:] for a in kept if a.shape[-2] != a.shape[-1])
            raise NotAViTError(
                f"the attention layers of {model.name} that can be read attend from {queries} tokens to {keys}, not "
                "from every token to every token; its attention cannot be rolled out or laid over the image."
            )
        grads = torch.autograd.grad(logits[0, target], kept) if target is not None else None
    if len(kept) != len(mods):
        raise NotAViTError(f"{model.name} ran {len(kept)} of its {len(mods)} attention layers; its attention cannot be read.")
    attn = torch.cat([a.detach().float() for a in kept]).cpu().numpy()
    prefix, has_cls, grid, patch_px = layout(model, attn.shape[-1], (int(x.shape[-2]), int(x.shape[-1])))
    return AttentionCapture(
        attn=attn,
        grads=torch.cat([g.float() for g in grads]).cpu().numpy() if grads is not None else None,
        target=target,
        logits=logits.detach()[0].float().cpu().numpy(),
        prefix_tokens=prefix,
        has_cls=has_cls,
        grid=grid,
        patch_px=patch_px,
    )
