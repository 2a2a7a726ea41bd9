"""Reference inputs for path and perturbation methods, built in pixel space then normalised like the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interp.attribution.settings import Setting
from interp.errors import BadSettingError, shown
from interp.models import LoadedModel

BASELINES = ("black", "white", "blur", "noise", "mean")
"""black and white: constant images; blur: the input under a wide Gaussian blur (keeps colours, removes
edges); noise: uniform noise (seeded); mean: the input's own mean colour everywhere."""


def make_baseline(kind: str, x: torch.Tensor, model: LoadedModel, seed: int = 0) -> torch.Tensor:
    """A ``(1, C, H, W)`` baseline for the preprocessed input ``x`` ``(1, C, H, W)``."""
    mean = torch.tensor(model.data_config["mean"], device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(model.data_config["std"], device=x.device).view(1, -1, 1, 1)
    pixels = x * std + mean  # back to [0, 1]
    if kind == "black":
        base = torch.zeros_like(pixels)
    elif kind == "white":
        base = torch.ones_like(pixels)
    elif kind == "mean":
        base = pixels.mean(dim=(2, 3), keepdim=True).expand_as(pixels)
    elif kind == "blur":
        base = gaussian_blur(pixels, sigma=max(x.shape[-1] / 16, 1.0))
    elif kind == "noise":
        gen = torch.Generator(device="cpu").manual_seed(seed)
        base = torch.rand(pixels.shape, generator=gen).to(x.device)
    else:
        raise BadSettingError(f"baseline {shown(kind)} is not one of {', '.join(BASELINES)}.")
    return ((base - mean) / std).contiguous()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflect padding."""
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    k = k[radius - pad : radius + pad + 1]
    out = F.pad(x, (pad, pad, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, pad, pad), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def baseline_setting(default: str, used_for: str) -> Setting:
    """The ``baseline`` row of a method's settings schema; ``used_for`` says what the method does with it."""
    return Setting(
        "baseline", "choice", default, "Baseline", choices=BASELINES,
        help=f"The reference image {used_for}: black, white, a blurred copy, noise, or the image's own mean colour.",
    )  # fmt: skip


SEED = Setting("seed", "int", 0, "Random seed", low=0, high=2**31 - 1,
               help="The same seed gives the same random samples, so the same map; change it to see how much "
               "the map depends on them.")  # fmt: skip
"""The ``seed`` row of every method that draws random samples (from a generator of its own, seeded by it)."""
