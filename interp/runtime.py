"""Process-wide tuning for tensor work on the CPU (freed memory stays with the process, to be reused), what
memory the process holds and may hold (its resident size, its container's limit, the room left), and
:func:`map_together`, which prepares a batch on the calling thread and a pool's at once, and :func:`prepared_ahead`,
which prepares the next batch in a thread (on a CUDA stream of its own) while the caller works on this one.

A forward pass on the CPU allocates and frees tens of megabytes per layer. glibc's malloc serves each allocation
above its mmap threshold (at most 32 MB) with fresh pages from the kernel and unmaps them again on free, and it
hands the top of its heap back above a trim threshold; the next batch then faults every page in again, and the
kernel zeroes each one. On the 2-core VM this project is measured on, a batch of 16 through EfficientNet-Lite0 spent
0.33 of its 0.40 s of wall time in the kernel (162,000 page faults); with freed memory kept, the batch took 0.22 s
and faulted 1,600 pages (ResNet-50: 1.36 s -> 0.90 s). The per-model memory budget
(:mod:`interp.attribution.memory`) counts what the heap holds free as reusable, so batch sizes stay as they were.

Only the main arena is steered: glibc gives a thread its arena when it first allocates, so threads that had one
before this runs keep theirs (a Streamlit server's script threads among them); there the gain is smaller.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

ENV_KEEP_FREED_MEMORY = "INTERP_KEEP_FREED_MEMORY"
"""Set to ``0`` to leave the C allocator as the process found it."""
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the heap's top beyond this goes back to the OS (after a ViT attribution's peak, say)."""

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # from glibc's malloc.h


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to serve large allocations from its heap and keep what is freed for the next ones. Runs once per
    process; returns whether the allocator was changed (``False`` off glibc, or where
    ``$INTERP_KEEP_FREED_MEMORY`` is ``0``)."""
    if os.environ.get(ENV_KEEP_FREED_MEMORY, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # no mmap for large blocks (they come from the heap, and return to it); a high trim threshold; threads that
    # have no arena yet share the existing ones rather than making new ones that glibc unmaps when they empty
    done = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), mallopt(_M_ARENA_MAX, 1)]
    return all(done)


# ------------------------------------------------------------------------ what the process holds and may hold


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

    glibc keeps freed memory to reuse (:func:`keep_freed_memory`), and work of the same kind does reuse it; but its
    count of free bytes also holds pages that are no longer resident, so "resident less free" read about 0 MB in a
    process that had run for a while, and work of another kind fragments what is kept (running every method in turn
    grew the process 0.7 GB past its ceiling). Handing the free pages back makes the resident size the true answer.
    It costs the next pass its page faults again, once per budget read (a third of an IG-32 on Lite0): not per batch,
    since a method reads its budget once, and a thread's run of the same work reads it once while no other thread
    runs a model (:func:`interp.attribution.memory.repeated_budget_mb`)."""
    _trim_free_heap()
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def anonymous_mb(status: Path = Path("/proc/self/status")) -> float | None:
    """The part of the resident memory the kernel cannot take back without killing the process (``RssAnon`` and
    ``RssShmem``: tensors, the heap), after the same hand-back as :func:`resident_mb`; ``None`` where the OS does not
    say. A container's limit is reached by this: the rest of ``VmRSS`` is the libraries' code (about 390 MB with
    torch), which the kernel drops and reads again under pressure. In a cgroup allowing 1,000 MB, a process holding
    704 MB by ``VmRSS`` loaded ViT-B/16 from a file (676 MB at its peak) and lived."""
    _trim_free_heap()
    try:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return sum(int(fields[k].split()[0]) for k in ("RssAnon", "RssShmem")) / 1024
    except (OSError, ValueError, KeyError, IndexError):
        return None


def heap_in_use() -> int | None:
    """Bytes the C heap has handed out and not had back (glibc's ``mallinfo2``: chunks in use, and blocks it mapped
    for them), read without handing anything back: a cheap sign of whether the process holds more or less than at
    an earlier reading. ``None`` where glibc does not say."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return info.uordblks + info.hblkhd


def _trim_free_heap() -> None:
    mallinfo2 = _mallinfo2()
    trim = _malloc_trim()
    if mallinfo2 is not None and trim is not None and mallinfo2().fordblks > TRIM_SLACK_MB * 2**20:
        trim(0)


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


HEADROOM_MB = 100
"""Kept free below a memory limit: for the error of estimates and the free heap glibc may keep (``TRIM_SLACK_MB``)."""


def memory_limit_mb() -> float | None:
    """What the whole process may hold: ``$INTERP_MEMORY_LIMIT_MB`` when set, else the container's limit, else
    ``None`` (nothing but the machine's memory limits it)."""
    from interp.config import Settings

    limit = Settings.from_env().memory_limit_mb
    return float(limit) if limit is not None else container_limit_mb()


def available_mb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """The memory the kernel says new work can have without swapping (``MemAvailable``), or ``None``."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def room_mb() -> float | None:
    """How much more this process may take before it is killed or the machine swaps: its limit
    (:func:`memory_limit_mb`) less what it cannot give back (:func:`anonymous_mb`, else its resident size), or, where
    nothing limits it, what the machine has available; ``None`` where the OS does not say."""
    limit = memory_limit_mb()
    if limit is None:
        return available_mb()
    held = anonymous_mb()
    held = resident_mb() if held is None else held
    return None if held is None else limit - held


T = TypeVar("T")


def map_together(
    fn: Callable[[Any], T], items: Sequence[Any], pool: ThreadPoolExecutor | None, helpers: int
) -> list[T]:
    """``[fn(x) for x in items]``, computed by this thread and ``helpers`` threads of ``pool``, each taking the next
    item as it finishes one (a scan's reading: the thread that ran the model's pass goes straight on to reading
    instead of waiting while the pool's threads wake up; on 2 cores, reading took 0.88 ms an image of a Lite0 scan
    against 0.94 with two pool threads, medians of five scans of 256 JPEGs; whole scans 2.4% faster)."""
    todo, out = iter(range(len(items))), [None] * len(items)

    def work() -> None:
        for i in todo:  # a range's iterator hands each index out once, whichever thread asks (the GIL)
            out[i] = fn(items[i])

    helping = [pool.submit(work) for _ in range(helpers)] if pool is not None else []
    try:
        work()
    finally:
        for f in helping:
            f.result()
    return out  # type: ignore[return-value]


def prepared_ahead(
    batches: Iterable[Any], prepare: Callable[[Any], T], device: torch.device | str, ahead: int = 1
) -> Iterator[T]:
    """``prepare(batch)`` for every batch, in order, each taken from ``batches`` and prepared by a thread of its own
    while the caller works on the one before (``ahead``: how many prepared batches may wait for the caller beside the
    one being prepared). On a GPU the thread decodes and resizes on a CUDA stream of its own while the model runs
    this batch (work on one stream runs in order: on the model's, each decoding waited for the pass before it). The
    thread also takes each batch from ``batches`` (a data loader's, which may wait for its workers): when the caller
    took them, the next pass was launched only once the loader had handed over the batch after it. What ``prepare``
    returns is handed over on the caller's stream: that stream waits for the preparing work, and every CUDA tensor
    returned (itself, or in a returned tuple) is kept from reuse until the caller's stream is done with it. An error
    in ``batches`` or ``prepare`` reaches the caller after the batches before it; a caller that stops early waits for
    one batch at most. A scan's batches (:mod:`interp.datasets.batches`) and concept extraction's on a GPU
    (:mod:`interp.concepts.activations`) come through here."""
    import contextlib
    import queue
    import threading

    import torch

    cuda = torch.device(device).type == "cuda"
    stream = torch.cuda.Stream(device) if cuda else None
    ready: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()
    source = iter(batches)

    def offer(entry) -> bool:
        """Put ``entry`` for the caller; ``False`` once the caller has stopped."""
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                for batch in source:
                    if stop.is_set():
                        return
                    out = prepare(batch)
                    done = torch.cuda.Event() if cuda else None
                    if done is not None:
                        done.record(stream)
                    if not offer(("batch", out, done)):
                        return
        except BaseException as exc:  # the caller raises it after the batches before it
            offer(("error", exc, None))
        else:
            offer(("end", None, None))

    def handed_over(out, done):
        if done is not None:
            current = torch.cuda.current_stream(device)
            current.wait_event(done)
            for part in out if isinstance(out, tuple) else (out,):
                if isinstance(part, torch.Tensor) and part.is_cuda:
                    part.record_stream(current)
        return out

    thread = threading.Thread(target=produce, name="prepare", daemon=True)
    thread.start()
    try:
        while True:
            kind, value, done = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield handed_over(value, done)
    finally:
        stop.set()
        thread.join()
        close = getattr(source, "close", None)
        if close is not None:  # a generator's clean-up (a pool of reading threads) runs now, not when collected
            close()
