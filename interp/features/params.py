"""How an optimised image is parameterised: plain pixels, or a Fourier spectrum, both with decorrelated colour.

Feature visualisation (Olah, Mordvintsev & Schubert 2017, "Feature Visualization", Distill) optimises an image so a
unit fires. In plain pixels the result is dominated by high-frequency noise; optimising the image's Fourier
coefficients, each scaled by ``1 / frequency`` so that every frequency starts with the same energy a natural
image's would have, gives the smoother pictures the article shows. Colour is decorrelated the same way: the three
parameter channels are mixed by the square root of ImageNet's colour covariance, then squashed into ``[0, 1]`` by a
sigmoid. The constants below are those the authors published with Lucid (and Lucent ports to PyTorch).
"""

from __future__ import annotations

import numpy as np
import torch

from interp.errors import BadSettingError, shown
from interp.features.settings import PARAMETERISATIONS

COLOUR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
"""The square root of ImageNet's RGB covariance (Lucid's ``color_correlation_svd_sqrt``)."""
_COLOUR = COLOUR_CORRELATION_SQRT / COLOUR_CORRELATION_SQRT.norm(dim=0).max()

FFT_DECAY = 1.0
"""Each Fourier coefficient is scaled by ``1 / frequency ** FFT_DECAY``: natural images' spectra fall off as 1/f."""

INIT_SD = 0.01


class ImageParam(torch.nn.Module):
    """``N`` images of ``size × size`` pixels, the only thing optimised. Calling it gives ``(N, 3, size, size)``
    RGB in ``[0, 1]``.

    Args:
        kind: ``"fft"`` or ``"pixel"``.
        size: side in pixels.
        batch: how many images.
        generator: seeds the starting noise (per request, never torch's global generator).
        decorrelate: mix the colour channels by :data:`COLOUR_CORRELATION_SQRT` (else each is its own channel).
    """

    def __init__(self, kind: str, size: int, batch: int, generator: torch.Generator, decorrelate: bool = True,
                 device: torch.device | str = "cpu") -> None:  # fmt: skip
        super().__init__()
        if kind not in PARAMETERISATIONS:
            raise BadSettingError(f"parameterisation is one of {', '.join(PARAMETERISATIONS)}; got {shown(kind)}.")
        self.kind, self.size, self.decorrelate = kind, size, decorrelate
        if kind == "fft":
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            freqs = (fy**2 + fx**2).sqrt()
            scale = 1.0 / freqs.clamp_min(1.0 / size) ** FFT_DECAY
            self.register_buffer("scale", scale.to(device))
            shape = (batch, 3, size, size // 2 + 1, 2)
        else:
            shape = (batch, 3, size, size)
        self.param = torch.nn.Parameter((torch.randn(shape, generator=generator) * INIT_SD).to(device))

    def forward(self) -> torch.Tensor:
        if self.kind == "fft":
            spectrum = torch.view_as_complex(self.param) * self.scale
            # "ortho": Lucid's unnormalised inverse transform with its sqrt(h·w) factor; 4: Lucid's constant
            image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        else:
            image = self.param
        if self.decorrelate:
            image = torch.einsum("nchw,dc->ndhw", image, _COLOUR.to(image.device))
        return torch.sigmoid(image)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in ``[0, 1]`` → ``(N, H, W, 3)`` ``uint8``."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
