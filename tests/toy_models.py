"""Small hand-built models with known layouts, shared by the tests of the views that read layers."""

from __future__ import annotations

import torch

from interp.models import LoadedModel, ModelSpec
from interp.models.loading import WeightsInfo


class _Permute(torch.nn.Module):
    def __init__(self, *order: int) -> None:
        super().__init__()
        self.order = order

    def forward(self, x):
        return x.permute(*self.order)


class _Pair(torch.nn.Module):
    """Returns a list, as CrossViT's blocks return their two branches."""

    def forward(self, x):
        return [x, 2 * x]


class _First(torch.nn.Module):
    def forward(self, pair):
        return pair[0]


def layouts_model() -> LoadedModel:
    """The same 16×16 map of 8 channels held three ways: ``mix`` channels last (as in Swin, or inside ConvNeXt's
    blocks), ``pair`` as the first of a list, ``nchw`` channels first."""
    layers = [("conv", torch.nn.Conv2d(3, 8, 4, stride=4)), ("to_nhwc", _Permute(0, 2, 3, 1)),
              ("mix", torch.nn.Linear(8, 8)), ("pair", _Pair()), ("first", _First()), ("nchw", _Permute(0, 3, 1, 2)),
              ("relu", torch.nn.ReLU()), ("pool", torch.nn.AdaptiveAvgPool2d(1)), ("flat", torch.nn.Flatten()),
              ("fc", torch.nn.Linear(8, 3))]  # fmt: skip
    net = torch.nn.Sequential()
    for name, module in layers:
        net.add_module(name, module)
    return _loaded(net, "layouts", "one map held three ways", size=64, seed=3)


def _loaded(net: torch.nn.Module, name: str, description: str, size: int, seed: int) -> LoadedModel:
    """``net`` with weights drawn from a generator seeded by ``seed``, frozen, as a model of three classes that sees
    ``size``-pixel images."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    net.eval().requires_grad_(False)
    cfg = {"input_size": (3, size, size), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear",
           "crop_pct": 1.0}
    spec = ModelSpec(name, name, "cnn", description)
    return LoadedModel(spec, net, WeightsInfo("random", "test", name), cfg, ("a", "b", "c"), torch.device("cpu"))


class _OneReluTwice(torch.nn.Module):
    """One ReLU module applied after both convolutions, as EfficientViT's attention reuses its activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.head(x.mean(dim=(2, 3)))


def reused_relu_model() -> LoadedModel:
    return _loaded(_OneReluTwice(), "reused", "one ReLU module used twice", size=32, seed=5)


class _SqrtOfZero(torch.nn.Module):
    """Adds sqrt(0·x) = 0: the scores are those of the network without it, but the gradient through it is ∞ × 0."""

    def forward(self, x):
        return x + (x * 0).sqrt()


def nan_gradient_model() -> LoadedModel:
    """Finite scores with a NaN gradient everywhere, as a model with a square root or a division at 0 can give."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), _SqrtOfZero(), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))  # fmt: skip
    return _loaded(net, "nan_gradient", "a square root of zero", size=32, seed=7)
