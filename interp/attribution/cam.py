"""Class activation maps. One base owns the hard part (the hook, the ViT token grid, upsampling); each variant
says only how to weigh the layer's channels.

The hook detaches the layer's output into a leaf that requires grad, so backward stops at the layer, and the layers
before it run without autograd: a Grad-CAM costs one forward pass and a backward through the last layers only. The
last such pass is kept beside the model, so another class or another CAM method on the same image and layer costs
that backward alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from interp.attribution.base import AttributionMethod, MethodNotApplicable, get_method, register
from interp.attribution.memory import counting_saved_bytes, forward_batch_size
from interp.attribution.settings import Setting
from interp.errors import BadSettingError
from interp.models import LoadedModel
from interp.models.hooks import first_output, hooked, with_first
from interp.models.layout import as_map, channels_last


def resolve_layer(model: LoadedModel, layer: str | None) -> tuple[str, torch.nn.Module]:
    name = layer or model.spec.cam_layer
    if not name:
        raise MethodNotApplicable(f"{model.name} has no default layer for CAM methods; name one (e.g. 'layer4').")
    return name, model.layer(name)


def to_grid(act: torch.Tensor, model: LoadedModel) -> torch.Tensor:
    """Layer output as ``(B, C, h, w)``: maps channels first whichever way the layer holds them, transformer tokens
    without their prefix tokens on the patch grid (:func:`interp.models.layout.as_map`)."""
    grid = as_map(model, act)
    if grid is not None:
        return grid
    if act.dim() == 3:
        raise BadSettingError(
            f"the layer has {act.shape[1]} tokens, which do not lay out on {model.name}'s patch grid; "
            "choose a layer inside the transformer blocks."
        )
    raise BadSettingError(f"the layer's output has shape {tuple(act.shape)}, which is not a spatial map; choose "
                          "another.")


KEEP_TAIL_MB = 64
"""The most that the layers after the CAM layer may record for backward for their pass to be kept for the next class
on the same image (measured at the default layers: ViT-B/16 5.8 MB; ResNet-50 and EfficientNet-Lite0 next to
nothing, since a pooled linear head with frozen weights keeps only its weights)."""


@dataclass(frozen=True, eq=False)
class _Pass:
    """One image through the model: the layer's output (a leaf), and the logits with the graph back to it."""

    x: torch.Tensor
    module: torch.nn.Module
    act: torch.Tensor
    logits: torch.Tensor


KEPT_PASS = "cam.layer_pass"
"""The name of the kept layer pass in the model's side store (:meth:`LoadedModel.side`)."""


def layer_pass(
    model: LoadedModel, module: torch.nn.Module, x: torch.Tensor, target: int | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Forward ``x``; return the layer's activations, their gradient for ``target`` (None if no target), logits.
    The activations are shared with later calls: never write to them.

    The layers before ``module`` run without autograd, as for a prediction: the hook turns gradients on once the
    layer has its output, so only the layers after it record what backward needs. The gradient at the layer is the
    same, since nothing before the layer is on a path from it to the logits. A Grad-CAM then costs a forward pass
    (ViT-B/16 on 2 cores: 4% faster without autograd than with it) and a backward through the last layers.

    The last pass with gradients is kept beside each model (when what it recorded is at most ``KEEP_TAIL_MB``):
    another class on the same image and layer, or another CAM method, then costs only that backward, the way the
    Attribution page's grid asks for them. Called inside ``model.exclusive()``, like every method."""
    kept = _kept_pass(model, module, x)
    if kept is None:
        kept = _run_pass(model, module, x, recording=target is not None)
    if target is None:
        return kept.act, None, kept.logits
    (grad,) = torch.autograd.grad(kept.logits[:, target].sum(), kept.act, retain_graph=True)
    return kept.act, grad, kept.logits


def _kept_pass(model: LoadedModel, module: torch.nn.Module, x: torch.Tensor) -> _Pass | None:
    kept = model.side(KEPT_PASS, dict).get("pass")
    if kept is None or kept.module is not module or kept.x.shape != x.shape or kept.x.device != x.device:
        return None
    return kept if torch.equal(kept.x, x) else None


def _run_pass(model: LoadedModel, module: torch.nn.Module, x: torch.Tensor, recording: bool) -> _Pass:
    captured: list[torch.Tensor] = []

    def keep(mod, inputs, output):
        out = first_output(output)
        leaf = out.detach().requires_grad_(recording)
        captured.append(leaf)
        if recording:
            torch.set_grad_enabled(True)  # the rest of the pass records its graph; the no_grad block restores
        # The pass goes on with a copy: the next step may write into its input (timm's ReLU(inplace=True) after a
        # block's bn1, `x += shortcut` after its bn2), which autograd refuses on a leaf and which would change the
        # activations kept here. The gradient reaches the leaf through the copy unchanged.
        onward = leaf.clone()
        return with_first(output, onward)

    with hooked(module.register_forward_hook(keep)), torch.no_grad(), counting_saved_bytes(model) as saved:
        logits = model.model(x.detach())
    if not captured:
        raise BadSettingError("the chosen layer is not run by the model's forward pass; choose another.")
    if recording and not logits.requires_grad:  # PiT's last stage: the head reads its class token, not its patches
        raise BadSettingError("the class scores do not depend on what the chosen layer gives first (the model goes "
                              "on from another of its outputs), so there is no gradient to weigh it by; choose another "
                              "layer.")
    found = _Pass(x.detach().clone(), module, captured[0], logits)
    if recording and saved() <= KEEP_TAIL_MB * 2**20:
        model.side(KEPT_PASS, dict)["pass"] = found
    return found


LAYER = Setting(
    "layer", "layer", None, "Layer",
    help="The layer whose feature map is weighed; the model's last spatial layer by default. Earlier layers give "
    "finer, noisier maps.",
)  # fmt: skip
"""The ``layer`` row of every CAM method: a module name of the model, ``None`` for the model's default."""


def upsampled(cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``(B, h, w)`` map as ``(B, 1, H, W)`` at the input's size, bilinearly."""
    return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False).detach()


class CamMethod(AttributionMethod):
    """Base of the CAM family: ``raw`` is ``(1, 1, H, W)``, non-negative, upsampled bilinearly to the input."""

    kind = "cam"
    signed = False
    settings = (LAYER,)
    uses_gradients = True

    def resolved_params(self, model):
        name, _ = resolve_layer(model, self.params.get("layer"))
        return {**self.params, "layer": name}

    def _attribute(self, model, x, target, params):
        _, module = resolve_layer(model, params["layer"])
        act, grad, _ = layer_pass(model, module, x, target if self.uses_gradients else None)
        act = to_grid(act, model)
        grad = to_grid(grad, model) if grad is not None else None
        cam = self.combine(act, grad, model, x, target, params).clamp(min=0)
        return upsampled(cam, x), None, {"layer_shape": list(act.shape[1:])}

    def combine(
        self, act: torch.Tensor, grad: torch.Tensor | None, model: LoadedModel, x: torch.Tensor, target: int,
        params: dict[str, Any],
    ) -> torch.Tensor:  # fmt: skip
        """``(B, h, w)`` map from activations and gradients ``(B, C, h, w)``."""
        raise NotImplementedError


@register
class GradCAM(CamMethod):
    name = "grad_cam"
    title = "Grad-CAM"
    summary = "Where in the last feature map the class's evidence sits: channels weighted by their mean gradient."
    paper = "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, 2017"

    def combine(self, act, grad, model, x, target, params):
        return (grad.mean(dim=(2, 3), keepdim=True) * act).sum(1)


@register
class GradCAMPlusPlus(CamMethod):
    name = "grad_cam_pp"
    title = "Grad-CAM++"
    summary = "Grad-CAM with per-location weights, better when several objects of the class are present."
    paper = "Chattopadhay et al., Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks, 2018"

    def combine(self, act, grad, model, x, target, params):
        g2, g3 = grad**2, grad**3
        denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g3
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        weights = (alpha * F.relu(grad)).sum(dim=(2, 3), keepdim=True)
        return (weights * act).sum(1)


@register
class LayerCAM(CamMethod):
    name = "layer_cam"
    title = "Layer-CAM"
    summary = "Each location weighted by its own positive gradient; works on earlier layers too, for finer maps."
    paper = "Jiang et al., LayerCAM: Exploring Hierarchical Class Activation Maps for Localization, 2021"

    def combine(self, act, grad, model, x, target, params):
        return (F.relu(grad) * act).sum(1)


@register
class ScoreCAM(CamMethod):
    name = "score_cam"
    title = "Score-CAM"
    summary = "No gradients: each channel's map masks the image, and the class score of the masked image is its weight."
    paper = "Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, 2020"
    settings = (
        LAYER,
        Setting("channels", "int", 128, "Score-CAM channels scored", low=1, high=4096, page_high=512, help=(
            "The paper scores every channel of the layer, one forward pass each; this scores the N most active. Fewer "
            "can miss the object: on the shapes world (60 images) shapes_vit's map pointed at it in 57% of images with "
            "64 of its 128 channels and 85% with all of them. 128 (the default) takes, on 2 CPU cores, about 1.6 s on "
            "EfficientNet-Lite0, 6.5 s on ResNet-50 and 27 s on ViT-B/16 (64: 0.9, 3.6, 13 s).")),
    )  # fmt: skip
    uses_gradients = False

    def combine(self, act, grad, model, x, target, params):
        # The paper scores every channel; we score the `channels` with the highest activation (its help says
        # what that costs and saves) and say so in the parameters.
        energy = act[0].flatten(1).amax(1)
        top = energy.topk(min(int(params["channels"]), act.shape[1])).indices
        maps = F.interpolate(act[:, top].transpose(0, 1), size=x.shape[-2:], mode="bilinear", align_corners=False)
        lo = maps.flatten(1).amin(1).view(-1, 1, 1, 1)
        hi = maps.flatten(1).amax(1).view(-1, 1, 1, 1)
        masks = (maps - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        scores = []
        chunk = forward_batch_size(model, x, len(top))
        with torch.no_grad():
            for start in range(0, len(top), chunk):
                logits = model.model(x * masks[start : start + chunk])
                scores.append(logits.softmax(-1)[:, target])
        weights = torch.cat(scores).view(1, -1, 1, 1)
        return (weights * act[:, top]).sum(1)


@register
class GuidedGradCAM(CamMethod):
    name = "guided_grad_cam"
    title = "Guided Grad-CAM"
    summary = "Guided Backprop's sharp edges, kept only where Grad-CAM says the class is."
    paper = "Selvaraju et al., Grad-CAM, 2017 (Guided Grad-CAM is its high-resolution variant)"

    def applies_to(self, model):
        return get_method("guided_backprop").applies_to(model)

    def _attribute(self, model, x, target, params):
        cam, _, extras = GradCAM(layer=params["layer"])._attribute(model, x, target, params)
        guided, _ = get_method("guided_backprop")._batch(model, x, target, {})
        return guided * cam, None, extras


@register
class HiResCAM(CamMethod):
    name = "hires_cam"
    title = "HiResCAM"
    summary = "Activations times their own gradients, summed over channels: Grad-CAM without averaging gradients."
    paper = "Draelos & Carin, Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural networks, 2020"

    def combine(self, act, grad, model, x, target, params):
        # With a pooled linear head this is exactly the share of the class score each location contributes.
        return (grad * act).sum(1)


@register
class XGradCAM(CamMethod):
    name = "xgrad_cam"
    title = "XGrad-CAM"
    summary = "Grad-CAM with each channel's gradient weighted by its own activation, chosen to satisfy two axioms."
    paper = "Fu et al., Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs, 2020"

    def combine(self, act, grad, model, x, target, params):
        total = act.sum(dim=(2, 3), keepdim=True)
        weights = (grad * act).sum(dim=(2, 3), keepdim=True) / (total + 1e-7)
        return (weights * act).sum(1)


@register
class EigenCAM(CamMethod):
    """The layer's activations projected on their first principal component (no class: every target gives the same
    map). The component's sign is arbitrary; we orient it so that the map agrees with where the channels are active
    on average, so the bright part is the strongly activated one."""

    name = "eigen_cam"
    title = "EigenCAM"
    summary = "The first principal component of the layer's feature map: where its features are, whatever the class."
    paper = "Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, 2020"
    uses_gradients = False

    def combine(self, act, grad, model, x, target, params):
        maps = []
        for a in act.float():
            flat = a.flatten(1).T  # (h·w, C)
            centred = flat - flat.mean(0, keepdim=True)
            _, _, vh = torch.linalg.svd(centred, full_matrices=False)
            projection = centred @ vh[0]
            if torch.dot(projection, flat.mean(1) - flat.mean()) < 0:
                projection = -projection
            maps.append(projection.view(a.shape[1:]))
        return torch.stack(maps)


@register
class AblationCAM(CamMethod):
    """Each channel's weight is the fraction of the class score lost when that channel is set to zero:
    ``(y - y_k) / |y|``. The paper divides by ``y``, which assumes a positive score; for a class whose logit is
    negative that turned every weight's sign and showed where the class is *not* (the grad-cam package does so).

    Only the layers after the chosen one run for each ablated channel: the layer's output (one image) is replaced by
    a batch of copies, each with one channel zeroed, and the rest of the network runs on that batch. A model whose
    forward pass mixes the layer's output with an earlier tensor of batch one (a skip connection over the layer)
    still works by broadcasting; one where that fails runs the whole model on copies of the image instead."""

    name = "ablation_cam"
    title = "Ablation-CAM"
    summary = "No gradients: each channel weighted by how much of the class score is lost when it is switched off."
    paper = "Desai & Ramaswamy, Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free Localization, 2020"
    uses_gradients = False
    settings = (
        LAYER,
        Setting("channels", "int", 2048, "Channels ablated", low=1, high=8192, page_high=2048, help=(
            "The paper ablates every channel, one pass of the layers after the chosen one each; this ablates the N "
            "most active and gives the others no weight. 2048 covers every channel of the usual last layers "
            "(ResNet-50 2048, EfficientNet-Lite0 1280, ViT-B 768).")),
    )  # fmt: skip

    def _attribute(self, model, x, target, params):
        _, module = resolve_layer(model, params["layer"])
        raw, _, logits = layer_pass(model, module, x, None)
        act = to_grid(raw, model)
        score = float(logits[0, target].detach())
        channels = act.shape[1]
        chosen = act[0].flatten(1).amax(1).topk(min(int(params["channels"]), channels)).indices
        weights = torch.zeros(channels, device=act.device)
        chunk = forward_batch_size(model, x, len(chosen))
        for start in range(0, len(chosen), chunk):
            part = chosen[start : start + chunk]
            ablated = raw.detach().expand(len(part), *raw.shape[1:]).clone()
            rows = torch.arange(len(part), device=raw.device)
            if raw.dim() == 4 and not channels_last(model, raw):
                ablated[rows, part] = 0
            else:  # tokens × features, or maps channels last: the channel zeroed everywhere
                ablated[rows, ..., part] = 0
            weights[part] = (score - self._scores(model, module, x, ablated, target)) / (abs(score) or 1.0)
        cam = (weights.view(1, -1, 1, 1) * act).sum(1).clamp(min=0)
        return upsampled(cam, x), None, {"layer_shape": list(act.shape[1:])}

    @staticmethod
    def _scores(model, module, x, ablated, target) -> torch.Tensor:
        def replace(mod, inputs, output):  # a copy each pass: the next layer may write into it (see _run_pass)
            onward = ablated.clone()
            return with_first(output, onward)

        with hooked(module.register_forward_hook(replace)), torch.no_grad():
            try:
                return model.model(x)[:, target]
            except RuntimeError:  # the batch of one met the batch of copies somewhere it could not broadcast
                return model.model(x.expand(len(ablated), *x.shape[1:]))[:, target]
