"""Captum's explainers, adjusted: DeepLIFT's Rescale rule for every elementwise activation, KernelSHAP's coalitions
and the surrogate fits of LIME and KernelSHAP drawn without torch's global random state.

Imported when a method runs, not with the method registry: Captum imports matplotlib, and both together took 0.6-0.9 s
and 30 MB of the app's start that its Home page never needs.
"""

from __future__ import annotations

import functools

import torch
from captum._utils.models.model import Model
from captum.attr import DeepLift, KernelShap


@functools.cache
def elementwise_activations() -> tuple[type[torch.nn.Module], ...]:
    """Activation modules that act on each value alone, beyond the ones Captum's DeepLift knows (ReLU, ELU, Leaky
    ReLU, sigmoid, tanh, softplus): torch's and timm's (timm builds its models from its own classes, and from its
    memory-efficient variants)."""
    import timm.layers.activations as timm_act
    import timm.layers.activations_me as timm_me

    nn = torch.nn
    ours = [nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.SELU, nn.CELU,
            nn.Softsign, nn.LogSigmoid, nn.PReLU, nn.RReLU]  # fmt: skip
    timm_names = ("Swish", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Mish", "HardMish", "GELU", "GELUTanh",
                  "QuickGELU", "PReLU")  # fmt: skip
    ours += [getattr(timm_act, n) for n in timm_names if hasattr(timm_act, n)]
    ours += [getattr(timm_me, n) for n in ("SwishMe", "MishMe", "HardSigmoidMe", "HardSwishMe", "HardMishMe")
             if hasattr(timm_me, n)]  # fmt: skip
    return tuple(ours)


class RescaleDeepLift(DeepLift):
    """Captum's DeepLift with the Rescale rule (each value's multiplier ``Δout / Δin``, the gradient where ``Δin`` is
    tiny) for every elementwise activation. Captum applies its rules to the activations it lists and lets any other
    one pass its plain gradient, which breaks summation-to-delta: on EfficientNet-Lite0 (ReLU6) the map added up to
    -0.4 for a logit change of 10 (a completeness error of 104%); with the rule, 0.0%."""

    def _is_non_linear(self, module: torch.nn.Module) -> bool:
        return super()._is_non_linear(module) or type(module) in elementwise_activations()

    def _backward_hook(self, module, grad_input, grad_output):
        from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR, nonlinear

        if type(module) in SUPPORTED_NON_LINEAR:
            return super()._backward_hook(module, grad_input, grad_output)
        if not self.satisfies_attribute_criteria(module):
            raise RuntimeError(f"{module} is used more than once in the network; DeepLIFT needs each once.")
        multipliers = nonlinear(module, module.input, module.output, grad_input, grad_output, eps=self.eps)
        del module.input
        del module.output
        return multipliers


class SeededKernelShap(KernelShap):
    """Captum's ``KernelShap`` with its coalitions drawn from ``gen`` instead of torch's global random state: the
    same sampling (a coalition size k with the Shapley kernel's weight, then k features uniformly at random)."""

    def __init__(self, forward, gen: torch.Generator) -> None:
        from sklearn.linear_model import LinearRegression

        self._gen = gen
        super().__init__(forward)
        self.interpretable_model = Surrogate(LinearRegression())  # Captum's choice for KernelSHAP

    def kernel_shap_perturb_generator(self, original_inp, **kwargs):
        device = original_inp.device
        features = int(kwargs["num_interp_features"])
        sizes = kwargs["num_select_distribution"].probs.cpu()
        yield torch.ones(1, features, device=device, dtype=torch.long)
        yield torch.zeros(1, features, device=device, dtype=torch.long)
        while True:
            k = int(torch.multinomial(sizes, 1, generator=self._gen))
            chosen = torch.randperm(features, generator=self._gen)[:k]
            row = torch.zeros(1, features, dtype=torch.long)
            row[0, chosen] = 1
            yield row.to(device)


class Surrogate(Model):
    """A weighted linear fit by scikit-learn, as Captum's ``SkLearnRidge`` / ``SkLearnLinearRegression`` do, without
    their two draws from torch's global generator: iterating the ``DataLoader`` Captum hands over draws a seed, and
    the ``torch.nn.Linear`` they build to hold the coefficients draws its initial weights."""

    def __init__(self, estimator) -> None:
        self._estimator = estimator
        self._coef: torch.Tensor | None = None

    def fit(self, train_data, **kwargs):
        x, y, w = (t.cpu().numpy() for t in train_data.dataset.tensors)
        self._estimator.fit(x, y, sample_weight=w)
        self._coef = torch.as_tensor(self._estimator.coef_, dtype=torch.float32).reshape(1, -1)
        return {}

    def representation(self) -> torch.Tensor:
        return self._coef

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # the surrogate's prediction; Captum never asks for it
        return x.float() @ self._coef.T + float(self._estimator.intercept_)
