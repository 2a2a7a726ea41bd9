"""Gradient methods: Captum where Captum has them, batched within a memory budget.

Each method works on a batch ``(B, C, H, W)`` through ``_batch``, so SmoothGrad and VarGrad can wrap any of them
by sending a batch of noisy copies.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from interp.attribution.base import AttributionMethod, MethodNotApplicable, get_method, register, target_logit
from interp.attribution.baselines import SEED, baseline_setting, make_baseline
from interp.attribution.memory import batch_size
from interp.attribution.settings import Setting
from interp.models import LoadedModel
from interp.models.hooks import hooked, modules_of, no_inplace_activations

_GUIDED_ACTIVATIONS = (torch.nn.ReLU, torch.nn.ReLU6)

# Captum's DeepLift warns on every call that it hooks the activations and removes the hooks afterwards: expected, and
# four lines of noise on the CLI's stderr.
warnings.filterwarnings("ignore", message="Setting forward, backward hooks and attributes on non-linear",
                        category=UserWarning)  # fmt: skip


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a leaf that requires grad: Captum would set the flag itself, with a warning logged on every call."""
    return x.detach().requires_grad_(True)


class GradientMethod(AttributionMethod):
    """A method defined on a batch of inputs; the base class calls it on the one input."""

    kind = "gradient"

    def _attribute(self, model, x, target, params):
        raw, delta = self._batch(model, x, target, params)
        if delta is None:
            return raw, None, {}
        # Captum's delta is sum(attr) - (f(x) - f(baseline)); the gap tells how large an error that is.
        gap = float(raw.detach().sum()) - delta
        return raw, delta, {"logit_gap": gap, "relative_delta": abs(delta) / max(abs(gap), 1e-12)}

    def _batch(
        self, model: LoadedModel, x: torch.Tensor, target: int, params: dict[str, Any]
    ) -> tuple[torch.Tensor, float | None]:
        """``(B, C, H, W)`` attributions for ``(B, C, H, W)`` inputs, and a completeness error if defined."""
        raise NotImplementedError


@register
class VanillaGradient(GradientMethod):
    name = "saliency"
    title = "Saliency (gradients)"
    summary = "How much each pixel's change would move the class score, right at this image."
    paper = "Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, 2014"

    def _batch(self, model, x, target, params):
        from captum.attr import Saliency

        return Saliency(target_logit(model, target)).attribute(_leaf(x), abs=False), None


@register
class InputTimesGradient(GradientMethod):
    name = "input_x_gradient"
    title = "Input × Gradient"
    summary = "The gradient weighted by the pixel values: a first-order estimate of each pixel's contribution."
    paper = "Shrikumar et al., Not Just a Black Box: Learning Important Features Through Propagating Activation Differences, 2016"

    def _batch(self, model, x, target, params):
        from captum.attr import InputXGradient

        return InputXGradient(target_logit(model, target)).attribute(_leaf(x)), None


@register
class IntegratedGradientsMethod(GradientMethod):
    """Integrated Gradients with Gauss-Legendre quadrature on ``steps`` points, as Captum's default.

    Equal to Captum's ``IntegratedGradients`` (tested). We run the path ourselves to batch it within the memory
    budget and to check completeness with one forward pass of input and baseline together, where Captum spends two
    separate passes on it: on the CPU a pass without gradients, on a GPU a part of the path's batch. That pass gives
    every class's logits, so they are kept per tensor (``kept_logits``): the next target class on the same image
    skips the pass, and the next image with a baseline that does not depend on it (black, white) puts
    only itself through it (on the CPU the pass of both is 3-4% of an IG-32). Gauss-Legendre, not the trapezoidal
    rule: on EfficientNet-Lite0 at 32 steps its completeness error was 28% against the trapezoid's 127%.

    The default baseline is the image's own mean colour (Captum's zero baseline is the dataset's mean colour after
    normalisation, close to it): from black, the path crosses images far from any the model saw, and on the bundled
    photos 32 steps left 10-28% completeness error (chelsea 28%, still 6.5% at 128 steps); from the mean colour
    0.8-2.0% on chelsea, coffee, rocket and astronaut, so the page's first view is not one it must flag. Not on every
    photo: over all 16 bundled ones, 9 stay above 5% at 32 steps (coins 41%); ``api.enough_steps`` finds a count
    that adds up (all 16 within 256).
    """

    name = "integrated_gradients"
    title = "Integrated Gradients"
    summary = "Gradients summed along a straight path from a baseline image; the map adds up to the score change."
    paper = "Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, 2017"
    # At most 1024 steps: numpy finds Gauss-Legendre nodes from a steps × steps eigenproblem (20,000 steps asked for
    # 3 GB, 100,000 for 75 GB), and beyond a few hundred steps the completeness error no longer falls.
    settings = (
        Setting("steps", "int", 32, "Integrated Gradients steps", low=2, high=1024, step=2, page_high=256,
                help="Points on the path from the baseline to the image. 32-128 is usually enough; the map's caption "
                "flags a completeness error above 5%, the sign to raise them."),
        baseline_setting("mean", "the path starts from"),
    )  # fmt: skip

    def _batch(self, model, x, target, params):
        steps = int(params["steps"])
        alphas, scales = gauss_legendre(steps, x.device, x.dtype)
        fits = batch_size(model, x, steps + 2, work=self.name)  # the path, and room for input and baseline beside it
        attrs, deltas = [], []
        for xi in x:
            xi = xi[None]
            base = make_baseline(params["baseline"], xi, model)
            diff = xi - base
            grad_sum = torch.zeros_like(base)
            pair = [xi, base]
            ends = [kept_logits(model, t) for t in pair]
            missing = [i for i, e in enumerate(ends) if e is None]
            extra = [pair[i] for i in missing]  # the inputs whose logits the check still needs
            # On a GPU a forward pass of two inputs costs about what one of 34 costs (the time goes in launching
            # kernels), so input and baseline whose logits are not kept go into the path's batch when all of it fits
            # one; on the CPU the time is arithmetic, and a separate pass without gradients is the cheaper one.
            fold = bool(missing) and x.device.type == "cuda" and fits == steps + 2
            chunks = -(-steps // min(fits, steps))  # equal chunks: 32 steps by 7 run as 7,7,6,6,6, not 7,7,7,7,4
            for a, w in zip(alphas.tensor_split(chunks), scales.tensor_split(chunks)):
                path = base + a.view(-1, 1, 1, 1) * diff
                if fold:
                    n = len(missing)
                    path = torch.cat([path, *extra]).requires_grad_(True)
                    logits = model.model(path)
                    for i, row in zip(missing, keep_logits(model, extra, logits[-n:])):
                        ends[i] = row
                    (grad,) = torch.autograd.grad(logits[:-n, target].sum(), path)
                    grad, fold, missing = grad[:-n], False, []
                else:
                    path.requires_grad_(True)
                    (grad,) = torch.autograd.grad(model.model(path)[:, target].sum(), path)
                grad_sum += (grad * w.view(-1, 1, 1, 1)).sum(0, keepdim=True)
            attr = diff * grad_sum
            if missing:
                with torch.no_grad():
                    logits = model.model(torch.cat(extra))
                for i, row in zip(missing, keep_logits(model, extra, logits)):
                    ends[i] = row
            end, begin = torch.stack([ends[0][target], ends[1][target]]).tolist()
            attrs.append(attr)
            deltas.append(float(attr.sum()) - (end - begin))
        return torch.cat(attrs), sum(deltas)


@functools.lru_cache(maxsize=16)
def gauss_legendre(steps: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes on [0, 1] and their weights (summing to 1) for ``steps``-point Gauss-Legendre quadrature, on
    ``device``; shared, never written to. Made once per step count and device: numpy solves an eigenproblem for
    them (half a millisecond at 32 steps), and on a GPU each tensor is a copy from the host."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (torch.tensor((nodes + 1) / 2, dtype=dtype, device=device),
            torch.tensor(weights / 2, dtype=dtype, device=device))  # fmt: skip


ENDPOINTS = "integrated_gradients.logits"
"""The name of IG's kept logits in the model's side store (:meth:`LoadedModel.side`)."""
_ENDPOINTS_KEPT = 8


def kept_logits(model: LoadedModel, x: torch.Tensor) -> torch.Tensor | None:
    """The ``(classes,)`` logits of the input ``x`` (``(1, C, H, W)``) if an earlier call kept them, else ``None``.
    Every target class explained on one image shares its logits, and every image its fixed baseline's.

    Found by comparing the tensors themselves (on the model's device), not a digest of their bytes: hashing meant
    copying them to the CPU: 3-4 ms on an H100, where all of an IG-32 of EfficientNet-Lite0 takes 12-15."""
    kept = model.side(ENDPOINTS, list)
    for i, (kx, logits) in enumerate(kept):
        if kx.shape == x.shape and kx.device == x.device and torch.equal(kx, x):
            kept.append(kept.pop(i))  # the most recently used last
            return logits
    return None


def keep_logits(model: LoadedModel, inputs: list[torch.Tensor], logits: torch.Tensor) -> list[torch.Tensor]:
    """Remember the rows of ``logits`` for ``inputs`` (each ``(1, C, H, W)``), the last 8 inputs per loaded model;
    returns the rows, detached. Kept in the model's side store (inside its gate), not on it, and gone with it."""
    rows = logits.detach().float()
    kept = model.side(ENDPOINTS, list)
    kept.extend((x.detach().clone(), row) for x, row in zip(inputs, rows))
    del kept[:-_ENDPOINTS_KEPT]
    return list(rows)


@register
class DeepLiftMethod(GradientMethod):
    name = "deeplift"
    title = "DeepLIFT"
    summary = "Compares every neuron with its value on a baseline and shares the difference out (Rescale rule)."
    paper = "Shrikumar, Greenside & Kundaje, Learning Important Features Through Propagating Activation Differences, 2017"
    settings = (baseline_setting("black", "each neuron's activation is compared with"),)
    incomplete_advice = ("this model has layers DeepLIFT's rules do not cover (a gate that multiplies activations, as "
                         "squeeze-and-excitation does, or a normalisation by their spread, as LayerNorm does), so its "
                         "map does not add up to the score change; read it with care, or compare Integrated "
                         "Gradients")  # fmt: skip

    def applies_to(self, model):
        if model.spec.family == "vit":
            return "attention multiplies activations together, which DeepLIFT's rules do not cover."
        return None

    def _batch(self, model, x, target, params):
        from interp.attribution.explainers import RescaleDeepLift

        baseline = torch.cat([make_baseline(params["baseline"], xi[None], model) for xi in x])
        # Captum's DeepLift needs a Module, not a function, and hooks every non-linearity: in-place ones break it.
        wrapped = _TargetModule(model.model, target)
        with no_inplace_activations(model.model):
            try:
                attr, delta = RescaleDeepLift(wrapped).attribute(_leaf(x), baselines=baseline,
                                                                 return_convergence_delta=True)  # fmt: skip
            except RuntimeError as exc:
                if "used more than once" not in str(exc):
                    raise
                raise MethodNotApplicable(
                    f"{self.title} does not apply to {model.name}: it runs one activation module at several places "
                    "of its pass, and DeepLIFT's rules follow each module once; compare Integrated Gradients."
                ) from exc
        return attr, float(delta.sum())


@register
class GradientShapMethod(GradientMethod):
    """Expected gradients over four reference images (black, white, blurred, noise).

    The sampling is Captum's ``GradientShap``'s (a noisy copy of the input, a random reference, a random point on
    the straight path between them; the gradient there times input minus reference; the mean over samples), but
    drawn here from a generator seeded by ``seed``: Captum draws from numpy's and torch's global random state,
    so the same call gave maps correlated only 0.23 with each other, and on a server that state is shared by
    every session. Drawn on the CPU, the samples are also the same on a GPU.
    """

    name = "gradient_shap"
    title = "GradientSHAP"
    summary = "Expected gradients: Integrated Gradients averaged over random baselines and random points on the path."
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, 2017"
    settings = (
        Setting("samples", "int", 16, "Samples", low=1, high=4096, page_high=128,
                help="Random points (a reference, a point on the path) averaged; more give a smoother, slower map."),
        Setting("noise", "float", 0.1, "Noise on the input", low=0.0, high=1.0, step=0.01, page_high=0.5,
                help="Standard deviation of the noise added to the image at each sample, in normalised units."),
        SEED,
    )  # fmt: skip

    def _batch(self, model, x, target, params):
        n = int(params["samples"])
        kinds = ("black", "white", "blur", "noise")
        refs = torch.cat([make_baseline(k, x[:1], model, seed=params["seed"]) for k in kinds])
        gen = torch.Generator(device="cpu").manual_seed(int(params["seed"]))
        pick = torch.randint(len(refs), (n,), generator=gen).to(x.device)
        alpha = torch.rand(n, generator=gen).to(x.device, x.dtype).view(-1, 1, 1, 1)
        noise = (torch.randn((n, *x.shape[1:]), generator=gen) * float(params["noise"])).to(x.device, x.dtype)
        chunk = batch_size(model, x, n, work=self.name)
        attrs = []
        for xi in x:
            total = torch.zeros_like(xi[None])
            for start in range(0, n, chunk):
                part = slice(start, start + chunk)
                ref = refs[pick[part]]
                diff = xi[None] + noise[part] - ref
                point = (ref + alpha[part] * diff).requires_grad_(True)
                (grad,) = torch.autograd.grad(model.model(point)[:, target].sum(), point)
                total += (grad * diff).sum(0, keepdim=True)
            attrs.append(total / n)
        return torch.cat(attrs), None


@register
class GuidedBackprop(GradientMethod):
    name = "guided_backprop"
    title = "Guided Backpropagation"
    summary = "Gradients where negative signals are stopped at every ReLU: sharp edges of what excites the class."
    paper = "Springenberg et al., Striving for Simplicity: The All Convolutional Net, 2015"
    signed = False

    def applies_to(self, model):
        if not any(isinstance(m, _GUIDED_ACTIVATIONS) for m in modules_of(model.structure)):
            return "it needs ReLU layers and this model has none (it uses GELU, SiLU or similar)."
        return None

    def _batch(self, model, x, target, params):
        # Captum's GuidedBackprop only knows nn.ReLU; EfficientNet-Lite uses ReLU6, whose backward is the same
        # gate, so we apply the rule (pass only positive gradients) to both.
        def guide(module, grad_input, grad_output):
            return tuple(None if g is None else g.clamp(min=0) for g in grad_input)

        x = x.detach().requires_grad_(True)
        with no_inplace_activations(model.model), hooked() as handles:
            for m in modules_of(model.model):
                if isinstance(m, _GUIDED_ACTIVATIONS):
                    handles.append(m.register_full_backward_hook(guide))
            score = model.model(x)[:, target].sum()
            (grad,) = torch.autograd.grad(score, x)
        return grad, None


def wrappable() -> tuple[str, ...]:
    """The methods SmoothGrad and VarGrad can wrap: every gradient method that is not itself a noise average."""
    from interp.attribution.base import METHODS

    return tuple(n for n, c in METHODS.items() if issubclass(c, GradientMethod) and not issubclass(c, NoiseAveraged))


class NoiseAveraged(GradientMethod):
    """Runs a gradient method on noisy copies of the input, in batches that fit the memory budget.

    Its settings are its own and those of every method it can wrap, named ``<method>.<setting>``
    (``integrated_gradients.steps``); only the wrapped method's count."""

    settings = (
        Setting("base", "method", "saliency", "Wrapped method", choices_of=wrappable,
                help="The gradient method run on every noisy copy; its own settings appear below it."),
        Setting("samples", "int", 16, "Noisy copies", low=1, high=4096, page_high=128,
                help="How many noisy copies are averaged; the speckle falls with their square root."),
        Setting("noise", "float", 0.15, "Noise level", low=0.0, high=1.0, step=0.01, page_high=0.5,
                help="Standard deviation of the noise, as a fraction of the input's range (the paper: 0.1-0.2)."),
        SEED,
    )  # fmt: skip
    reduce: str = "mean"

    @classmethod
    def schema(cls):
        from interp.attribution.base import METHODS

        inner = tuple(
            replace(s, name=f"{m}.{s.name}", label=f"{METHODS[m].title}: {s.label}", when=("base", m))
            for m in wrappable()
            for s in METHODS[m].schema()
        )
        return cls.settings + inner

    def wrapped(self) -> GradientMethod:
        """The wrapped method with its settings."""
        base = self.params["base"]
        prefix = f"{base}."
        return get_method(base, **{k[len(prefix):]: v for k, v in self.params.items() if k.startswith(prefix)})

    def applies_to(self, model):
        return self.wrapped().applies_to(model)

    def _batch(self, model, x, target, params):
        base = self.wrapped()
        n = int(params["samples"])
        sigma = float(params["noise"]) * float(x.max() - x.min())
        gen = torch.Generator(device="cpu").manual_seed(int(params["seed"]))
        noise = (torch.randn((n, *x.shape[1:]), generator=gen) * sigma).to(x.device)
        # Integrated Gradients inside multiplies the work by its steps: size the chunk for that.
        inner = int(base.params.get("steps", 1))
        chunk = max(1, batch_size(model, x, n * inner, work=self.name) // inner)
        total = torch.zeros_like(x[:1], dtype=torch.float64)  # float64: VarGrad's E[a²] - E[a]² cancels
        total_sq = torch.zeros_like(total)
        for start in range(0, n, chunk):
            noisy = x[:1] + noise[start : start + chunk]
            attr, _ = base._batch(model, noisy, target, base.resolved_params(model))
            total += attr.double().sum(0, keepdim=True)
            total_sq += (attr.double() ** 2).sum(0, keepdim=True)
        mean = total / n
        out = mean if self.reduce == "mean" else (total_sq / n - mean**2).clamp(min=0)
        return out.float(), None


@register
class SmoothGrad(NoiseAveraged):
    name = "smoothgrad"
    title = "SmoothGrad"
    summary = "Averages a gradient map over noisy copies of the image, which removes much of its speckle."
    paper = "Smilkov et al., SmoothGrad: removing noise by adding noise, 2017"


@register
class VarGrad(NoiseAveraged):
    name = "vargrad"
    title = "VarGrad"
    summary = "The variance of a gradient map over noisy copies of the image: where the explanation is unstable."
    paper = "Adebayo et al., Local Explanation Methods for Deep Neural Networks Lack Sensitivity to Parameter Values, 2018"
    signed = False
    reduce = "var"


class _TargetModule(torch.nn.Module):
    """``model(x)[:, target]`` as a Module (Captum's DeepLift hooks modules of the model it is given)."""

    def __init__(self, model: torch.nn.Module, target: int) -> None:
        super().__init__()
        self.model = model
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.target]
