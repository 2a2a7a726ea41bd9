"""A class opening one link at once: many sessions ask the server for the same map in the same second.

    python bench/bench_classroom.py [--sessions 8] [--model efficientnet_lite0] [--method integrated_gradients]

Each run starts from an empty result cache; ``--sessions`` threads ask for the same map of the same photo at once,
as the sessions of a Streamlit server do. Printed side by side in one run (on the model's device, a GPU when there
is one): the time until every session has its map ÷ the time of one map alone, with the cache's single computation
per key (:meth:`interp.ResultCache.computing`) and without it (each session computes the map itself; the model's
gate runs them one after another). Ratios, not absolute times, are the result; CI does not run this.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def all_sessions(model, image, method: str, sessions: int, single: bool) -> float:
    """Seconds until ``sessions`` threads asking at once for one map all have it, from an empty cache."""
    import interp
    from interp.attribution import attribute

    with tempfile.TemporaryDirectory() as folder:
        cache = interp.ResultCache(Path(folder)) if single else None  # without a cache each session computes alone
        start = threading.Barrier(sessions + 1)
        errors: list[BaseException] = []

        def session() -> None:
            start.wait()
            try:
                attribute(model, image, method, 282, cache=cache)
            except BaseException as exc:  # noqa: BLE001 - a session that fails makes the timing meaningless
                errors.append(exc)

        threads = [threading.Thread(target=session) for _ in range(sessions)]
        for t in threads:
            t.start()
        start.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"{len(errors)} of {sessions} sessions failed; no timing") from errors[0]
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import interp
    from interp.attribution import attribute

    model = interp.load_model(args.model, "bundled" if args.model == interp.DEFAULT_MODEL else "random")
    image = interp.load_sample("chelsea")
    attribute(model, image, args.method, 282)  # warm-up
    one, shared, alone = [], [], []
    for _ in range(args.repeats):  # in turn, so that a shared CPU's drift hits all three alike
        began = time.perf_counter()
        attribute(model, image, args.method, 282)
        one.append(time.perf_counter() - began)
        shared.append(all_sessions(model, image, args.method, args.sessions, single=True))
        alone.append(all_sessions(model, image, args.method, args.sessions, single=False))
    base = min(one)
    print(f"{args.model} on {model.device}, {args.method}: one map {base:.2f} s (best of {args.repeats})")
    print(f"{args.sessions} sessions at once, computed once:   {min(shared):.2f} s = {min(shared) / base:.2f}× one map")
    print(f"{args.sessions} sessions at once, each computing: {min(alone):.2f} s = {min(alone) / base:.2f}× one map")


if __name__ == "__main__":
    main()
