"""How an activation maximisation is run: the settings the page, the CLI and the API share. Plain data, no torch:
``python -m interp visualize --help`` prints their defaults without loading the engine."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from interp.errors import BadSettingError, real_number, shown, whole_number

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
        whole = lambda v, lo, hi: (n := whole_number(v)) is not None and lo <= n <= hi  # noqa: E731
        real = lambda v, lo, hi: (x := real_number(v)) is not None and lo <= x <= hi  # noqa: E731
        checks = [
            (self.param in PARAMETERISATIONS,
             f"param is one of {', '.join(PARAMETERISATIONS)}; got {shown(self.param)}."),
            (whole(self.steps, 1, 4096), f"steps is a whole number from 1 to 4096; got {shown(self.steps)}."),
            (whole(self.size, 32, 512), f"size is a whole number from 32 to 512 pixels; got {shown(self.size)}."),
            (whole(self.batch, 1, 16), f"batch is a whole number from 1 to 16 images; got {shown(self.batch)}."),
            (real(self.lr, 0, 1) and self.lr > 0, f"lr is above 0 and at most 1; got {shown(self.lr)}."),
            (whole(self.jitter, 0, (whole_number(self.size) or 0) // 4),
             f"jitter is a whole number from 0 to a quarter of the size; got {shown(self.jitter)}."),
            (real(self.scale, 0, 0.5), f"scale is from 0 to 0.5; got {shown(self.scale)}."),
            (real(self.rotate, 0, 45), f"rotate is from 0 to 45 degrees; got {shown(self.rotate)}."),
            (all(real(w, 0, math.inf) for w in (self.tv, self.l2, self.diversity)),
             f"tv, l2 and diversity are weights of 0 or more; got {shown(self.tv)}, {shown(self.l2)}, "
             f"{shown(self.diversity)}."),
            (whole(self.seed, 0, 2**63 - 1), f"seed is a whole number of 0 or more; got {shown(self.seed)}."),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise BadSettingError(message)
        for name in ("steps", "size", "batch", "jitter", "seed"):  # NumPy's integers as int: the settings go to JSON
            object.__setattr__(self, name, whole_number(getattr(self, name)))

    def as_dict(self) -> dict:
        return asdict(self)
