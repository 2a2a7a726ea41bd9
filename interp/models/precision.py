"""Reduced precision for batch work (scans, activation extraction), as an option with a proof.

- ``fp32``: full precision; the default on the CPU (where bf16 is rarely faster and TF32 does not exist).
- ``tf32``: on a CUDA GPU, matrix products and convolutions round their inputs to TF32 (10-bit mantissa) on the
  tensor cores, accumulating in fp32: the default on a GPU, because top-1 decisions practically never change while
  convolutional and transformer layers run on the tensor cores. It is a process-wide switch in torch, so only batch
  commands take it (the dashboard runs fp32); on the CPU it is fp32.
- ``bf16``: autocast to bfloat16 (8-bit mantissa), per thread: the fastest on a GPU (a ViT-B forward 7× its fp32 on
  an H200), and the one most likely to change a close call, so a scan in reduced precision re-runs a sample in fp32
  and records the top-1 agreement in ``scan.json`` (:func:`interp.datasets.scanner.scan`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from interp.errors import BadSettingError, shown

PRECISIONS = ("fp32", "tf32", "bf16")
_TF32 = threading.Lock()


def default_precision(device: torch.device | str) -> str:
    """``"tf32"`` on a CUDA device, ``"fp32"`` elsewhere (see the module's docstring)."""
    return "tf32" if torch.device(device).type == "cuda" else "fp32"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise BadSettingError(f"precision is one of {', '.join(PRECISIONS)}; got {shown(precision)}.")
    return precision


@contextlib.contextmanager
def precision_scope(device: torch.device | str, precision: str) -> Iterator[None]:
    """Run the block's passes in ``precision`` on ``device``; everything is as before when it ends."""
    check_precision(precision)
    device = torch.device(device)
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    elif precision == "tf32" and device.type == "cuda":
        with _TF32:  # one block at a time flips the process-wide switches, and puts them back
            matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    else:
        yield
