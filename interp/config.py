"""Settings that the person running the app controls: where results are cached, which device runs the models.

Nothing is read at import time. ``Settings.from_env()`` reads the environment when called, so tests and the
dashboard each decide when settings are taken.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

ENV_CACHE_DIR = "INTERP_CACHE_DIR"
ENV_CACHE_SIZE_MB = "INTERP_CACHE_SIZE_MB"
ENV_DEVICE = "INTERP_DEVICE"
ENV_MEMORY_LIMIT_MB = "INTERP_MEMORY_LIMIT_MB"
ENV_SHARE_CONCEPTS = "INTERP_SHARE_CONCEPTS"


@dataclass(frozen=True)
class Settings:
    """Run-time settings.

    Attributes:
        cache_dir: folder of the on-disk result cache (default ``~/.cache/interp``; ``$INTERP_CACHE_DIR``).
        cache_size_mb: the result cache evicts least-recently-used entries past this size (``$INTERP_CACHE_SIZE_MB``).
        device: ``"auto"`` (the GPU when there is one, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``…
            (``$INTERP_DEVICE``).
        memory_limit_mb: what the whole process may hold (``$INTERP_MEMORY_LIMIT_MB``): models that would not fit are
            refused and attributions batch within it; ``None``: the container's limit when there is one
            (:mod:`interp.runtime`), and a 2 GB ceiling for attributions (:mod:`interp.attribution.memory`).
        share_concepts: whether visitors of the app may add concept sets to the server's shared library, which every
            visitor sees (``$INTERP_SHARE_CONCEPTS``, ``1`` or ``0``); a visitor's own sets are theirs alone either way.
    """

    cache_dir: Path
    cache_size_mb: int = 1024
    device: str = "auto"
    memory_limit_mb: int | None = None
    share_concepts: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables, falling back to the defaults above."""
        env = os.environ if environ is None else environ
        cache_dir = env.get(ENV_CACHE_DIR) or str(Path.home() / ".cache" / "interp")
        size_mb = _megabytes(env, ENV_CACHE_SIZE_MB, "1024")
        limit_mb = _megabytes(env, ENV_MEMORY_LIMIT_MB, "2000") if env.get(ENV_MEMORY_LIMIT_MB) else None
        share = env.get(ENV_SHARE_CONCEPTS, "1").strip().lower()
        if share not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"{ENV_SHARE_CONCEPTS}={share!r} is neither 1 nor 0; set 0 to keep every visitor's "
                             "concept sets to themselves.")  # fmt: skip
        return cls(cache_dir=Path(cache_dir).expanduser(), cache_size_mb=size_mb, device=env.get(ENV_DEVICE, "auto"),
                   memory_limit_mb=limit_mb, share_concepts=share in ("1", "true", "yes"))  # fmt: skip


def _megabytes(env: Mapping[str, str], name: str, example: str) -> int:
    value = env.get(name, example)
    try:
        mb = int(value)
    except ValueError:
        mb = -1
    if mb < 0:
        raise ValueError(f"{name}={value!r} is not a whole number of megabytes; set e.g. {example}.")
    return mb


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Turn ``"auto"`` into the GPU when one is usable, else the CPU; check any explicit device exists. ``None``: the
    device ``$INTERP_DEVICE`` names, ``"auto"`` where it is not set."""
    if isinstance(device, torch.device):
        return device
    if device is None:
        device = Settings.from_env().device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but no CUDA GPU is usable here; use 'auto' or 'cpu'.")
    return dev
