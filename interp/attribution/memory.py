"""Choose batch sizes from a memory budget, so that IG or SmoothGrad on a ViT-B stays within a small server.

Captum's default puts every IG step in one batch: 4.3 GB peak for ViT-B/16 at 32 steps. We measure what autograd
keeps for backward on one input (its saved tensors, counted once each) and fit as many inputs as the budget allows.
On the CPU the budget is what the process ceiling leaves above the memory the process holds now, read from the OS
(it counts the runtime, every cached model and Streamlit itself); on a GPU it is a share of the card's free memory,
so the steps run in one or few batches there. The ceiling is 2 GB less some slack, lower in a container that allows
less (its cgroup's memory limit), or whatever ``$INTERP_MEMORY_LIMIT_MB`` says (:func:`activation_budget_mb`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator

import torch

from interp.config import Settings
from interp.models import LoadedModel
from interp.models.gate import passes_by_other_threads
from interp.runtime import HEADROOM_MB, anonymous_mb, container_limit_mb, heap_in_use, resident_mb

PROCESS_CEILING_MB = 1830
"""What the whole process may reach while attributing (``VmRSS``) where no setting says otherwise: under 2 GB
(Community Cloud gives 0.7-2.7 GB), with 200 MB for the error of the per-input estimate and the free heap glibc may
keep (with a ceiling of 1,900 MB, runs of every method on Lite0 peaked at 1.82-2.01 GB, once at 2,106 MB: LIME, 206 MB
past it; which thread's heap a pass's buffers land in varies from run to run). A container's lower limit lowers it
(:func:`activation_budget_mb`)."""
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


def activation_budget_mb(model: LoadedModel) -> int:
    """Memory for activations, never below a floor. On a GPU: a share of the memory the card has free now (the weights
    are already on it). On the CPU: ``PROCESS_CEILING_MB`` less what the process holds now (``VmRSS``; where the OS
    does not say, an estimate of the runtime and this model's weights), and no more than a memory limit leaves
    (``$INTERP_MEMORY_LIMIT_MB``, which replaces the 2 GB ceiling, or a container's limit) less ``HEADROOM_MB`` and
    what the process cannot give back (:func:`interp.runtime.anonymous_mb`: a container's kernel takes back the
    libraries' pages before it kills)."""
    if model.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(model.device)
        return max(MIN_BUDGET_MB, int(free * GPU_SHARE / 2**20))
    held = resident_mb()
    if held is None:
        net = model.structure
        weights = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
        held = RUNTIME_MB + weights / 2**20
    explicit = Settings.from_env().memory_limit_mb
    rooms = [] if explicit is not None else [PROCESS_CEILING_MB - held]
    limit = explicit if explicit is not None else container_limit_mb()
    if limit is not None:
        anonymous = anonymous_mb()
        rooms.append(limit - HEADROOM_MB - (held if anonymous is None else anonymous))
    return max(MIN_BUDGET_MB, int(min(rooms)))


def batch_size(
    model: LoadedModel, x: torch.Tensor, wanted: int, budget_mb: int | None = None, work: str | None = None
) -> int:
    """How many inputs like ``x`` to push through forward+backward at once: at most ``wanted``, at least 1.
    ``work`` names what the batches are for (a method's name): the same work asked again by one thread is answered
    from its last budget while no other thread has run a model and nothing has taken or given back memory
    (:func:`repeated_budget_mb`)."""
    if budget_mb is None:  # read before the probe's forward pass
        if work is None:
            _budgets.last = None  # other work: the pages it leaves do not serve the next repeated work's pass
            budget_mb = activation_budget_mb(model)
        else:
            budget_mb = repeated_budget_mb(model, x, wanted, work)
    per_input = max(saved_bytes_per_input(model, x), 1)
    fits = int(budget_mb * 2**20 // (per_input * BACKWARD_FACTOR.get(model.spec.family, 2.1)))
    return max(1, min(wanted, fits))


REREAD_MB = 32
"""How far the heap in use may have moved since a work's last budget read before :func:`repeated_budget_mb` reads
it again. Less than ``HEADROOM_MB``, which covers an answer this far out of date."""
_budgets = threading.local()
"""Each thread's last budget read for repeated work, ``_budgets.last``: ``(work's key, budget MB, heap in use after
the read, other threads' passes by then)``, or ``None`` once this thread has sized other work since."""


def repeated_budget_mb(model: LoadedModel, x: torch.Tensor, wanted: int, work: str) -> int:
    """:func:`activation_budget_mb` for ``work`` on inputs like ``x``, read once for a run of the same work.

    On the CPU a budget read hands the heap's free pages back to the OS so that the resident size is true
    (:func:`interp.runtime.resident_mb`), and the next pass faults each of them in again: on EfficientNet-Lite0 an IG-32
    took 0.79 s beside a raw batched forward+backward of 0.53 s, and 0.60 s without the hand-back. Work repeated by one
    thread with the same model, input size and batch (IG for another class, SmoothGrad's inner IG, a folder of images, a
    page's row of classes) reuses the pages its last pass freed, so its last budget still holds while nothing else
    happened: no other thread has run a model since that read (:func:`passes_by_other_threads`), and the heap holds what
    it held after it (within ``REREAD_MB``: tensors held or given back, a model loaded or dropped). Anything else reads
    it again. So does different work, since another pattern of allocations does not fit the free pages it finds (running
    every method in turn grew a process 0.7 GB past its ceiling when free heap counted as room), and the same work after
    other work in this thread, whose freed pages stay resident beneath it: GradientSHAP for four classes, the thirteen
    methods before it in the list, then GradientSHAP again, allowed its first budget, took a process from 1.79 to 2.01
    GB in one run (by 0-0.11 GB in five others). Passes without gradients (occlusion, RISE, LIME, Score-CAM) read every
    time: run for them, it gained RISE 5% and raised the peak of IG, SmoothGrad and GradientSHAP for several classes
    followed by every method from 1.82-1.94 GB to 1.98-2.05 GB.

    Each thread keeps its own budgets, and another thread's pass makes them stale: glibc gives threads heaps of
    their own, and pages one session's pass freed in its thread's heap cannot serve another's pass (a budget shared
    by every thread took six visitors on the Attribution page to 3,326 MB against 2.7 GB); another session's pass
    that took memory and gave it back leaves the heap's count where it was, but its freed pages resident."""
    if model.device.type == "cuda":
        return activation_budget_mb(model)
    key = (model.key, tuple(x.shape[1:]), wanted, work, Settings.from_env().memory_limit_mb)
    now, others, last = heap_in_use(), passes_by_other_threads(), getattr(_budgets, "last", None)
    if now is not None and last is not None and last[0] == key and others == last[3]:
        if abs(now - last[2]) <= REREAD_MB * 2**20:
            return last[1]
    budget = activation_budget_mb(model)
    after = heap_in_use()
    _budgets.last = (key, budget, after, passes_by_other_threads()) if after is not None else None
    return budget


def forward_batch_size(model: LoadedModel, x: torch.Tensor, wanted: int) -> int:
    """How many inputs like ``x`` to push through a forward pass without gradients at once: as many as a pass with
    gradients may take (:func:`batch_size`), at most ``wanted``.

    A forward pass alone peaks at 0.24-0.30 of what autograd saves per input (EfficientNet-Lite0; ResNet-50 0.20,
    ViT-B/16 0.19), but Captum's perturbed copies and the heap's fragmentation beside it bring a perturbation method to
    about half of a backward pass's peak per input. Twice as many inputs took occlusion and LIME on Lite0 0.78-1.03 GB
    above what the process held against a budget of 0.87-0.99 GB, and CI's run of every method to 2,051 MB (LIME);
    as many, 0.30-0.57 GB, in the same time or less (occlusion 2.0-2.2 s against 2.1, LIME 2.5-2.6 s against 3.1, RISE
    11.0-11.6 s against 11.2-11.4: on the CPU a batch of 9 is as fast per image as one of 18). Four times as many took
    occlusion 1.2 GB past its budget."""
    return batch_size(model, x, wanted)
