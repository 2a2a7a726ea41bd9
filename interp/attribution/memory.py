"""Choose batch sizes from a memory budget, so that IG or SmoothGrad on a ViT-B stays within a small server.

Captum's default puts every IG step in one batch: 4.3 GB peak for ViT-B/16 at 32 steps. We measure what autograd
keeps for backward on one input (its saved tensors, counted once each) and fit as many inputs as the budget allows.
On the CPU the budget is what the process ceiling leaves above the memory the process holds now, read from the OS
(it counts the runtime, every cached model and Streamlit itself); on a GPU it is a share of the card's free memory,
so the steps run in one or few batches there. The ceiling is 2 GB less some slack, lower in a container that allows
less (its cgroup's memory limit), or whatever ``$INTERP_MEMORY_LIMIT_MB`` says.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import torch

from interp.config import Settings
from interp.models import LoadedModel

DEFAULT_LIMIT_MB = 2000
"""What the whole process may hold where nothing says less (Community Cloud gives 0.7-2.7 GB)."""
HEADROOM_MB = 100
"""Kept below the limit for the error of the per-input estimate and the free heap glibc may keep (``TRIM_SLACK_MB``)."""
PROCESS_CEILING_MB = DEFAULT_LIMIT_MB - HEADROOM_MB
"""What the whole process may reach while attributing where no container or setting says less."""
RUNTIME_MB = 750
"""Where the OS cannot tell: resident size of Python with torch, timm and captum imported (measured: 733 MB)."""
MIN_BUDGET_MB = 128
GPU_SHARE = 0.5
"""On a GPU: the share of the card's free memory one attribution may fill (other sessions use the card too)."""
BACKWARD_FACTOR = {"cnn": 1.4, "vit": 2.1}
"""Peak memory per input during forward+backward ÷ the bytes autograd saves, measured on this project's models:
EfficientNet-Lite0 1.24, ResNet-50 1.38, ViT-B/16 2.07 (attention's backward makes large temporaries)."""
_measured: dict[tuple[str, tuple[int, ...]], int] = {}
_lock = threading.Lock()


def saved_bytes_per_input(model: LoadedModel, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward when one input of ``x``'s shape goes forward with gradients on."""
    key = (model.key, tuple(x.shape[1:]))
    with _lock:
        if key in _measured:
            return _measured[key]
    probe = x[:1].detach().clone().requires_grad_(True)
    with model.shared() as net, torch.enable_grad(), counting_saved_bytes(model) as saved:
        net(probe)
    total = saved()
    with _lock:
        _measured[key] = total
    return total


@contextlib.contextmanager
def counting_saved_bytes(model: LoadedModel) -> Iterator[Callable[[], int]]:
    """Within the block, count the bytes autograd saves for backward (each storage once; the model's weights not at
    all, since they are kept whatever the batch). Yields a function returning the count so far."""
    seen: dict[tuple[int, int], int] = {}
    shared = _weight_storages(model.structure)

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in shared:
            seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield lambda: sum(seen.values())


_WEIGHT_STORAGES: weakref.WeakKeyDictionary[torch.nn.Module, frozenset[int]] = weakref.WeakKeyDictionary()


def _weight_storages(module: torch.nn.Module) -> frozenset[int]:
    """Where ``module``'s parameters and buffers live, listed once per model (listing them walks every submodule:
    most of a millisecond for a ViT-B, which on a GPU is a good part of a Grad-CAM)."""
    found = _WEIGHT_STORAGES.get(module)
    if found is None:
        tensors = [*module.parameters(), *module.buffers()]
        found = _WEIGHT_STORAGES[module] = frozenset(t.untyped_storage().data_ptr() for t in tensors)
    return found


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


@functools.cache
def _mallinfo2():
    """glibc's ``mallinfo2``, looked up once (each lookup builds a ctypes class: a third of a millisecond), or
    ``None`` where there is none (not glibc, or glibc before 2.33)."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


TRIM_SLACK_MB = 64
"""Free heap memory glibc may keep when a budget is read; beyond it the free pages go back to the OS first."""


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once, or ``None`` where there is none."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def resident_mb() -> float | None:
    """The memory this process holds now, as the OS counts it (``VmRSS``), after handing back the free heap pages
    glibc kept (when more than ``TRIM_SLACK_MB``); ``None`` where the OS does not say.

    glibc keeps freed memory to reuse (:mod:`interp.runtime`), and work of the same kind does reuse it; but its count
    of free bytes also holds pages that are no longer resident, so "resident less free" read about 0 MB in a process
    that had run for a while, and work of another kind fragments what is kept (running every method in turn grew the
    process 0.7 GB past its ceiling). Handing the free pages back makes the resident size the true answer. It costs
    the next pass some page faults, once per budget read: not per batch, since a method reads its budget once."""
    mallinfo2 = _mallinfo2()
    trim = _malloc_trim()
    if mallinfo2 is not None and trim is not None and mallinfo2().fordblks > TRIM_SLACK_MB * 2**20:
        trim(0)
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


CGROUP_MOUNT = Path("/sys/fs/cgroup")
_NO_LIMIT = 2**60
"""cgroup v1 writes "no limit" as the largest page-aligned 64-bit number; v2 writes ``max``."""


@functools.cache
def container_limit_mb(mount: Path = CGROUP_MOUNT, membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The memory limit of the container this process runs in, in MB: the lowest ``memory.max`` (cgroup v2) or
    ``memory.limit_in_bytes`` (v1) on the way from the process's own cgroup up to the root of the hierarchy as mounted
    (in a container the mount's root is often the container's own group). ``None`` where nothing limits it or the
    OS does not say. Read once per process."""
    try:
        groups = membership.read_text()
    except OSError:
        return None
    limits = []
    for path in _limit_files(mount, groups):
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < _NO_LIMIT:
            limits.append(int(value) / 2**20)
    return min(limits, default=None)


def _limit_files(mount: Path, groups: str) -> Iterator[Path]:
    """Every file that may hold a memory limit for a process in ``groups`` (the text of ``/proc/self/cgroup``)."""
    for line in groups.splitlines():
        hierarchy, controllers, group = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:
            base, name = mount, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = mount / "memory", "memory.limit_in_bytes"
        else:
            continue
        parts = PurePosixPath(group).parts[1:]
        for depth in range(len(parts), -1, -1):
            yield base.joinpath(*parts[:depth], name)


def process_ceiling_mb() -> int:
    """What the whole process may reach while attributing on the CPU: ``$INTERP_MEMORY_LIMIT_MB`` when set, else 2 GB
    or the container's limit when lower, in each case less ``HEADROOM_MB``."""
    limit = Settings.from_env().memory_limit_mb
    if limit is None:
        limit = min(DEFAULT_LIMIT_MB, container_limit_mb() or DEFAULT_LIMIT_MB)
    return int(limit - HEADROOM_MB)


def activation_budget_mb(model: LoadedModel) -> int:
    """Memory for activations, never below a floor. On the CPU: the process ceiling (``process_ceiling_mb``) less
    what the process holds now (or, where the OS does not say, less an estimate of the runtime and this model's
    weights). On a GPU: a share of the memory the card has free now (the weights are already on it)."""
    if model.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(model.device)
        return max(MIN_BUDGET_MB, int(free * GPU_SHARE / 2**20))
    held = resident_mb()
    if held is None:
        net = model.structure
        weights = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
        held = RUNTIME_MB + weights / 2**20
    return max(MIN_BUDGET_MB, int(process_ceiling_mb() - held))


def batch_size(model: LoadedModel, x: torch.Tensor, wanted: int, budget_mb: int | None = None) -> int:
    """How many inputs like ``x`` to push through forward+backward at once: at most ``wanted``, at least 1."""
    budget = activation_budget_mb(model) if budget_mb is None else budget_mb  # before the probe's forward pass
    per_input = max(saved_bytes_per_input(model, x), 1)
    fits = int(budget * 2**20 // (per_input * BACKWARD_FACTOR.get(model.spec.family, 2.1)))
    return max(1, min(wanted, fits))


FORWARD_MULTIPLE = 2
"""How many more inputs a pass without gradients may take than one with them. Measured peaks per input of a forward
pass alone, as a share of what autograd saves: EfficientNet-Lite0 0.24-0.30, ResNet-50 0.20, ViT-B/16 0.19; with
Captum's perturbed copies and glibc's fragmentation beside them, 4 took occlusion on Lite0 1.2 GB past its budget."""


def forward_batch_size(model: LoadedModel, x: torch.Tensor, wanted: int) -> int:
    """How many inputs like ``x`` to push through a forward pass without gradients at once: at most ``wanted``."""
    return max(1, min(wanted, FORWARD_MULTIPLE * batch_size(model, x, wanted)))
