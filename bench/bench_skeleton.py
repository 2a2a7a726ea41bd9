"""Walking-skeleton benchmark: what a user waits for, measured side by side in one run.

    python bench/bench_skeleton.py [--repeats 30] [--no-browser]

1. Server start to first prediction visible in Chromium (cold: fresh process and result cache), beside the time
   the server takes to answer its health check.
2. A warm prediction (``interp.predict``: preprocessing + forward + top-k) and a cached one (disk hit) against a
   bare forward pass of an already preprocessed tensor, on the same loaded model. Ratios, not absolute times,
   are the result; CI does not run this.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def interleaved_medians(candidates: dict, repeats: int) -> dict[str, float]:
    """Median time of each candidate, running them in turn within each round so that drift of a shared CPU
    hits all of them alike."""
    for fn in candidates.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_prediction(repeats: int) -> dict[str, float]:
    import torch

    import interp
    from interp.predict import cached_predict

    model = interp.load_model("efficientnet_lite0")  # where the app runs it: a GPU when there is one
    image = interp.load_sample("chelsea")
    x = model.preprocess(image.image).unsqueeze(0).to(model.device)

    def bare() -> None:
        with torch.inference_mode():
            model._module(x).cpu()  # the logits back on the CPU, as a prediction's are (and a GPU's work waited for)

    with tempfile.TemporaryDirectory() as tmp:
        cache = interp.ResultCache(tmp)
        cached_predict(model, image, cache)
        return interleaved_medians(
            {
                "bare forward": bare,
                "warm predict": lambda: interp.predict(model, image),
                "cached predict": lambda: cached_predict(model, image, cache),
            },
            repeats,
        )


def bench_browser() -> dict[str, float]:
    import re
    import urllib.request

    from tests.browser.harness import chromium_page, streamlit_server

    with tempfile.TemporaryDirectory() as cache_dir:
        env = {"INTERP_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1"}
        with chromium_page() as page:
            page.set_default_timeout(120_000)
            start = time.perf_counter()
            with streamlit_server(env=env) as url:
                healthy = time.perf_counter() - start
                page.goto(url)
                page.get_by_text(re.compile(r"tiger cat · \d+\.\d%")).wait_for()
                visible = time.perf_counter() - start
                reload_start = time.perf_counter()
                page.reload()
                page.get_by_text(re.compile(r"tiger cat · \d+\.\d%")).wait_for()
                reload = time.perf_counter() - reload_start
                urllib.request.urlopen(f"{url}/_stcore/health").close()
    return {"server healthy": healthy, "first prediction visible": visible, "reload, all cached": reload}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from interp.config import resolve_device

    device = resolve_device(None)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, efficientnet_lite0, chelsea, {where}")
    pred = bench_prediction(args.repeats)
    base = pred["bare forward"]
    print(f"\n{'prediction (median of ' + str(args.repeats) + ', interleaved)':<34}{'ms':>9}{'÷ bare forward':>17}")
    for name, seconds in pred.items():
        print(f"{name:<34}{seconds * 1000:9.1f}{seconds / base:17.2f}")
    if not args.no_browser:
        ui = bench_browser()
        print(f"\n{'browser (Debian chromium)':<34}{'s':>9}{'÷ server healthy':>17}")
        for name, seconds in ui.items():
            print(f"{name:<34}{seconds:9.2f}{seconds / ui['server healthy']:17.2f}")


if __name__ == "__main__":
    main()
