"""The process-wide allocator tuning that lets a forward pass on the CPU reuse freed memory."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from interp.runtime import ENV_KEEP_FREED_MEMORY, keep_freed_memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")


_FAULTS_IN_A_FORWARD_PASS = """
import resource, torch
from interp.runtime import keep_freed_memory

def faults(model, x):  # minor page faults (a page the kernel had to hand over and zero) during one forward pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        model(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

assert keep_freed_memory()
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU()
)
x = torch.randn(8, 3, 256, 256)
for _ in range(2):
    faults(model, x)
print(faults(model, x))
"""


@glibc_only
def test_a_forward_pass_reuses_the_memory_the_last_one_freed():
    """Each activation here is 64 MB, above the largest mmap threshold glibc allows (32 MB): untuned, each one is
    unmapped when freed and its 16,384 pages fault in again in the next pass, as a CNN's activations did.

    Measured in a fresh process: page faults are counted for the whole process, whose heap after the rest of the
    suite is not this test's to control (once in CI one activation faulted in again, 16,385 faults; probably the
    heap's free top crossing the trim threshold)."""
    done = subprocess.run([sys.executable, "-c", _FAULTS_IN_A_FORWARD_PASS], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < 2000


def test_loading_a_model_on_the_cpu_tunes_the_allocator(monkeypatch):
    import interp
    from interp.models import loading

    calls = []
    monkeypatch.setattr(loading, "keep_freed_memory", lambda: calls.append(1))
    interp.load_model("test_resnet", "random", device="cpu")
    assert calls == [1]


def test_the_tuning_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(ENV_KEEP_FREED_MEMORY, "0")
    assert keep_freed_memory.__wrapped__() is False
