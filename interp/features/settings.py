"""How an activation maximisation is run: the settings the page, the CLI and the API share. Plain data, no torch:
``python -m interp visualize --help`` prints their defaults without loading the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from interp.errors import BadSettingError

Parameterisation = Literal["fft", "pixel"]
PARAMETERISATIONS: tuple[str, ...] = ("fft", "pixel")


@dataclass(frozen=True)
class VisualiseSettings:
    """How to optimise. The defaults draw a 128-pixel image in 256 steps: about 6 s for EfficientNet-Lite0 on two CPU
    cores (``bench/bench_features.py``), and what Lucent's defaults look like.

    Attributes:
        param: ``"fft"`` (default) or ``"pixel"``.
        steps: optimiser steps, 1 to 4096.
        size: the image's side in pixels, 32 to 512 (a ViT sees it resized to its input size).
        batch: images optimised at once, 1 to 16.
        lr: Adam's step size.
        jitter: the largest shift, in pixels, each step (0: none).
        scale: the largest relative zoom each step (0.1: from 0.9× to 1.1×).
        rotate: the largest rotation each step, in degrees.
        tv: weight of the total-variation penalty (smoothness).
        l2: weight of the L2 penalty on the distance from grey.
        diversity: weight of the diversity term (only with ``batch`` > 1).
        decorrelate: decorrelated colour (:data:`interp.features.params.COLOUR_CORRELATION_SQRT`).
        seed: seeds the starting noise and every transform.
    """

    param: str = "fft"
    steps: int = 256
    size: int = 128
    batch: int = 1
    lr: float = 0.05
    jitter: int = 8
    scale: float = 0.1
    rotate: float = 10.0
    tv: float = 0.0
    l2: float = 0.0
    diversity: float = 0.0
    decorrelate: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.param in PARAMETERISATIONS, f"param is one of {', '.join(PARAMETERISATIONS)}; got {self.param!r}."),
            (1 <= self.steps <= 4096, f"steps is from 1 to 4096; got {self.steps}."),
            (32 <= self.size <= 512, f"size is from 32 to 512 pixels; got {self.size}."),
            (1 <= self.batch <= 16, f"batch is from 1 to 16 images; got {self.batch}."),
            (0 < self.lr <= 1, f"lr is above 0 and at most 1; got {self.lr}."),
            (0 <= self.jitter <= self.size // 4, f"jitter is from 0 to a quarter of the size; got {self.jitter}."),
            (0 <= self.scale <= 0.5, f"scale is from 0 to 0.5; got {self.scale}."),
            (0 <= self.rotate <= 45, f"rotate is from 0 to 45 degrees; got {self.rotate}."),
            (min(self.tv, self.l2, self.diversity) >= 0, "tv, l2 and diversity are weights of 0 or more."),
        ]
        for ok, message in checks:
            if not ok:
                raise BadSettingError(message)

    def as_dict(self) -> dict:
        return asdict(self)
