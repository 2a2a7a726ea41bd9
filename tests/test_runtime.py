"""The process-wide allocator tuning that lets a forward pass on the CPU reuse freed memory, and what memory the
process holds and may hold."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from interp import runtime
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
print(*(faults(model, x) for _ in range(5)))
"""


@glibc_only
def test_a_forward_pass_reuses_the_memory_the_last_one_freed():
    """Each activation here is 64 MB, above the largest mmap threshold glibc allows (32 MB): untuned, each one is
    unmapped when freed and its 16,384 pages fault in again in the next pass, as a CNN's activations did.

    Measured in a fresh process: page faults are counted for the whole process, whose heap after the rest of the
    suite is not this test's to control. The median of five passes after two: now and then (1 process in 12 here,
    once in CI) the heap still grows by one activation in a third pass, 16,384 faults, and then stays; the order in
    which the threads of a convolution take and free their buffers is not the same in every run. Untuned, every pass
    faults about 114,700 pages."""
    done = subprocess.run([sys.executable, "-c", _FAULTS_IN_A_FORWARD_PASS], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert done.returncode == 0, done.stderr
    passes = sorted(int(count) for count in done.stdout.split()[-5:])
    assert passes[2] < 2000, passes


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


def _cgroup(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize(
    ("membership", "files", "expected"),
    [
        # cgroup v2 in a container with its own namespace: the mount's root is the container's group
        ("0::/\n", {"memory.max": "1073741824\n"}, 1024),
        ("0::/\n", {"memory.max": "max\n"}, None),
        # v2 in a systemd service: the lowest limit on the way up counts
        ("0::/system.slice/app.service\n", {"system.slice/app.service/memory.max": "max",
                                            "system.slice/memory.max": str(800 * 2**20)}, 800),
        # v1 (Docker without a cgroup namespace): the group's path is not under the mount, its root holds the limit
        ("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", {"memory/memory.limit_in_bytes": str(700 * 2**20)}, 700),
        ("4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712"}, None),  # v1's "no limit"
        ("12:cpu:/\n", {}, None),  # no memory controller
        ("0::/\n", {"memory.max": "garbage"}, None),
    ],
)
def test_the_container_memory_limit_is_read_from_cgroups(tmp_path, membership, files, expected):
    _cgroup(tmp_path / "fs", files)
    (tmp_path / "cgroup").write_text(membership)
    assert runtime.container_limit_mb(tmp_path / "fs", tmp_path / "cgroup") == expected
    assert runtime.container_limit_mb(tmp_path / "fs", tmp_path / "absent") is None


def test_what_the_process_cannot_give_back_and_what_the_machine_has_are_read_from_proc(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  720000 kB\nRssAnon:\t  300000 kB\nRssFile:\t  400000 kB\n"
                      "RssShmem:\t   20000 kB\n")  # fmt: skip
    assert runtime.anonymous_mb(status) == pytest.approx(320000 / 1024)
    status.write_text("Name:\tpython\n")  # an OS that does not say
    assert runtime.anonymous_mb(status) is None
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684000 kB\nMemFree:        20000000 kB\nMemAvailable:   23000000 kB\n")
    assert runtime.available_mb(meminfo) == pytest.approx(23000000 / 1024)
    assert runtime.available_mb(tmp_path / "absent") is None
    if Path("/proc/self/status").exists():  # this process: some of what it holds is its own, none is more than all
        assert 0 < runtime.anonymous_mb() <= runtime.resident_mb() + 1


def test_the_room_left_is_the_limit_less_what_cannot_be_given_back_else_what_the_machine_has(monkeypatch):
    monkeypatch.delenv("INTERP_MEMORY_LIMIT_MB", raising=False)
    monkeypatch.setattr(runtime, "anonymous_mb", lambda: 300.0)
    monkeypatch.setattr(runtime, "resident_mb", lambda: 700.0)
    monkeypatch.setattr(runtime, "available_mb", lambda: 9000.0)
    monkeypatch.setattr(runtime, "container_limit_mb", lambda: None)
    assert runtime.memory_limit_mb() is None and runtime.room_mb() == 9000.0
    monkeypatch.setattr(runtime, "container_limit_mb", lambda: 1000.0)
    assert runtime.memory_limit_mb() == 1000.0 and runtime.room_mb() == 700.0
    monkeypatch.setenv("INTERP_MEMORY_LIMIT_MB", "2500")  # the setting wins over the container
    assert runtime.room_mb() == 2200.0
    monkeypatch.setattr(runtime, "anonymous_mb", lambda: None)
    assert runtime.room_mb() == 1800.0  # the resident size where the OS does not split it
