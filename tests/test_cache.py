"""The disk result cache: content-addressed, bounded, safe across processes, and never unpickles."""

from __future__ import annotations

import multiprocessing as mp
import sys
import types

import numpy as np
import pytest

import interp
from interp import ResultCache, result_key
from interp.predict import cached_predict


def test_round_trip_keeps_arrays_and_meta(tmp_path):
    cache = ResultCache(tmp_path)
    key = result_key(model="m@1", image="abc", method="ig", params={"steps": 32})
    cache.put(key, {"map": np.arange(12, dtype=np.float32).reshape(3, 4)}, {"delta": 0.01, "target": 5})
    got = cache.get(key)
    assert got is not None and got.meta == {"delta": 0.01, "target": 5}
    np.testing.assert_array_equal(got.arrays["map"], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert got.arrays["map"].dtype == np.float32


def test_keys_change_with_every_input():
    base = dict(model="m@1", image="abc", method="ig", params={"steps": 32, "target": 1})
    keys = {
        result_key(**base),
        result_key(**{**base, "model": "m@2"}),
        result_key(**{**base, "image": "abd"}),
        result_key(**{**base, "method": "saliency"}),
        result_key(**{**base, "params": {"steps": 64, "target": 1}}),
    }
    assert len(keys) == 5
    assert result_key(**base) == result_key(**{**base, "params": {"target": 1, "steps": 32}})  # order-free


def test_an_upgraded_engine_or_library_never_reads_the_old_codes_results(tmp_path, monkeypatch):
    """A cached map is found again only by the same code: any change to the engine's files or to the version of a
    numeric library (torch, timm, Captum…) gives every key a new value, so a fixed method or another preprocessing
    is never answered from the disk cache with what the old code computed."""
    import importlib.metadata
    import shutil
    from pathlib import Path

    import interp.cache as cache_module

    engine = Path(cache_module.__file__).parent
    copy = tmp_path / "engine"
    shutil.copytree(engine, copy, ignore=shutil.ignore_patterns("__pycache__"))
    fingerprint = cache_module.engine_fingerprint.__wrapped__  # uncached: each call reads the files again
    assert fingerprint(copy) == fingerprint(engine) == cache_module.engine_fingerprint()  # content, not place
    (copy / "attribution" / "gradient.py").write_text((copy / "attribution" / "gradient.py").read_text() + "\n# fix\n")
    assert fingerprint(copy) != fingerprint(engine)
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == "captum" else real_version(name))
    assert fingerprint(engine) != cache_module.engine_fingerprint()
    monkeypatch.undo()

    cache = ResultCache(tmp_path / "cache")
    args = dict(model="m@1", image="abc", method="integrated_gradients", params={"steps": 32})
    cache.put(result_key(**args), {"map": np.zeros(3)}, {})
    assert cache.get(result_key(**args)) is not None
    monkeypatch.setattr(cache_module, "engine_fingerprint", lambda: "another engine")
    assert cache.get(result_key(**args)) is None


def test_get_or_compute_computes_once(tmp_path):
    cache, calls = ResultCache(tmp_path), []

    def compute():
        calls.append(1)
        return {"x": np.ones(3)}, {"n": 1}

    first, hit1 = cache.get_or_compute("k", compute)
    second, hit2 = cache.get_or_compute("k", compute)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first.arrays["x"], second.arrays["x"])


def test_a_large_result_is_written_to_its_file_whole_not_line_by_line(tmp_path, monkeypatch):
    """diskcache writes bytes handed to it one line at a time (a write per newline byte): a 250 KB activation row took
    800 writes. A result large enough for a file of its own goes in as a reader, in one chunk, and reads back the
    same; a small one stays inside the index, as before."""
    import diskcache.core

    chunks: list[int] = []
    write = diskcache.core.Disk._write

    def counting(self, full_path, iterator, mode, encoding=None):
        def counted():
            for chunk in iterator:
                chunks.append(len(chunk))
                yield chunk

        return write(self, full_path, counted(), mode, encoding)

    monkeypatch.setattr(diskcache.core.Disk, "_write", counting)
    cache = ResultCache(tmp_path)
    row = np.random.default_rng(0).standard_normal(62_720).astype(np.float32)
    row[::7] = np.frombuffer(b"\n\n\n\n", dtype=np.float32)[0]  # many newline bytes, as real rows have
    cache.put("row", {"a": row}, {"layer": "bn2"})
    got = cache.get("row")
    assert got is not None and got.meta == {"layer": "bn2"}
    np.testing.assert_array_equal(got.arrays["a"], row)
    assert len(chunks) == 1 and chunks[0] > row.nbytes  # the whole entry in one write
    assert len(list(tmp_path.rglob("*.val"))) == 1
    assert cache.volume_bytes() >= row.nbytes  # the size bound counts it

    cache.put("small", {"a": row[:100]})
    np.testing.assert_array_equal(cache.get("small").arrays["a"], row[:100])
    assert len(chunks) == 1 and len(list(tmp_path.rglob("*.val"))) == 1  # in the index, no file


def test_size_is_bounded(tmp_path):
    cache = ResultCache(tmp_path, size_limit_mb=4)
    for i in range(200):
        cache.put(f"k{i}", {"x": np.random.default_rng(i).random(8_192)})  # 64 KB each, 12.5 MB in all
    assert cache.volume_bytes() < 5 * 2**20  # diskcache culls up to 10 entries at a time past the limit
    assert "k199" in cache and "k0" not in cache
    assert 30 < len(cache) < 70


def test_corrupt_entry_is_dropped_not_raised(tmp_path):
    cache = ResultCache(tmp_path)
    cache._store.set("bad", b"not an npz")
    assert cache.get("bad") is None and "bad" not in cache


def test_reserved_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        ResultCache(tmp_path).put("k", {"__meta__": np.zeros(1)})


def _writer(directory: str, worker: int) -> None:
    cache = ResultCache(directory)
    for i in range(50):
        cache.put(f"w{worker}-{i}", {"x": np.full(100, worker * 1000 + i)}, {"worker": worker})
        cache.get(f"w{(worker + 1) % 3}-{i}")


def test_safe_across_processes(tmp_path, monkeypatch):
    # A spawned process first runs what ``__main__`` names; an AppTest run earlier in this process can leave its own
    # script there (test_callbacks' called an undefined ``__args`` in each writer). A main module of nothing: the
    # writers import this test module by name instead.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    procs = [mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = ResultCache(tmp_path)
    assert len(cache) == 150
    got = cache.get("w2-17")
    assert got is not None and got.meta == {"worker": 2} and int(got.arrays["x"][0]) == 2017


def test_predictions_go_through_the_cache(lite0, tmp_path):
    cache = ResultCache(tmp_path)
    image = interp.load_sample("coffee")
    first = cached_predict(lite0, image, cache)
    assert len(cache) == 1
    second = cached_predict(lite0, image, cache)
    assert first == second and first.top.label == "espresso"


def test_threads_asking_for_the_same_key_compute_it_once_and_other_keys_do_not_wait(tmp_path):
    """A class opening the teacher's link at once: each result is computed by one session; the rest find it."""
    import threading
    import time

    from interp import cache as cache_module
    from interp.cache import computed_once

    cache = ResultCache(tmp_path)
    calls = []

    def slow(key: str) -> tuple[dict, dict]:
        calls.append(key)
        time.sleep(0.3)
        return {"v": np.array([len(calls)])}, {"by": threading.get_ident()}

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_compute("same", lambda: slow("same"))))
               for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert calls == ["same"]
    assert sorted(hit for _, hit in got) == [False] + [True] * 5
    assert len({r.meta["by"] for r, _ in got}) == 1

    # two different keys computed at the same moment: each must reach the barrier while the other holds its key
    barrier = threading.Barrier(2, timeout=10)

    def meet(key: str) -> None:
        with computed_once(cache, key) as found:
            assert found is None
            barrier.wait()  # raises BrokenBarrierError if the second key waited for the first
            cache.put(key, {"v": np.array([1])})

    pair = [threading.Thread(target=meet, args=(k,)) for k in ("a", "b")]
    for t in pair:
        t.start()
    for t in pair:
        t.join(timeout=30)
    assert "a" in cache and "b" in cache
    assert not cache_module._FLIGHTS  # nothing left behind

    # a computation that fails lets the next one try
    with pytest.raises(RuntimeError):
        with computed_once(cache, "flaky"):
            raise RuntimeError("out of memory")
    result, hit = cache.get_or_compute("flaky", lambda: ({"v": np.array([2])}, {}))
    assert not hit and int(result.arrays["v"][0]) == 2 and not cache_module._FLIGHTS


def test_sessions_asking_for_the_same_map_at_once_compute_it_once(tmp_path, monkeypatch):
    import threading

    from interp.attribution import METHODS, attribute

    model = interp.load_model("test_resnet", "random")
    image = interp.load_sample("coffee")
    cache = ResultCache(tmp_path)
    ran = []
    real = METHODS["integrated_gradients"]._attribute

    def counted(self, *args, **kwargs):
        ran.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(METHODS["integrated_gradients"], "_attribute", counted)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        attribute(model, image, "integrated_gradients", 3, cache=cache, steps=16))) for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 6 and len(ran) == 1
    assert sorted(bool(r.extras.get("cached")) for r in results) == [False] + [True] * 5
    for r in results:
        np.testing.assert_array_equal(r.raw, results[0].raw)
