"""How much memory loading a model takes, and the check that refuses one this process has no room for (a container
that runs out is killed whole, every visitor's session with it)."""

from __future__ import annotations

from interp.errors import NotEnoughMemoryError
from interp.models.specs import ModelSpec, parameter_count
from interp.runtime import HEADROOM_MB, room_mb

LOAD_OVERHEAD_MB = 64
"""What loading takes beyond the weights (timm's modules, the first buffers); measured 24-54 MB."""


def load_memory_mb(spec: ModelSpec, weights: object) -> float:
    """Memory loading ``spec`` takes at its peak, in MB: its float32 weights once when they are drawn at random, twice
    when they are read (the state dict beside the model until it is copied in). Measured peaks over the process
    before: ViT-B/16 354 MB at random, 676 from a file (weights 330 MB); ResNet-50 151 and 231 (weights 97 MB)."""
    weights_mb = parameter_count(spec.name) * 4 / 2**20
    return weights_mb * (1 if isinstance(weights, str) and weights == "random" else 2) + LOAD_OVERHEAD_MB


def check_room(spec: ModelSpec, weights: object) -> None:
    """Refuse, with a sentence, a model whose loading would take more memory than this process has left: in a
    container the kernel would kill the whole server, every visitor's session with it."""
    room = room_mb()
    if room is None:
        return
    need = load_memory_mb(spec, weights)
    if need + HEADROOM_MB > room:
        millions = parameter_count(spec.name) / 1e6
        raise NotEnoughMemoryError(
            f"{spec.name} ({millions:,.0f} M parameters) needs about {need:,.0f} MB to load and this server has "
            f"about {max(room - HEADROOM_MB, 0):,.0f} MB left; pick a smaller model.",
            need_mb=need + HEADROOM_MB,
            room_mb=room,
        )
