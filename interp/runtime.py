"""Process-wide tuning for tensor work on the CPU: freed memory stays with the process, to be reused.

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
