"""Several visitors at once on one fresh server, in real browser contexts: every page finishes, nothing is mixed up.

Before the model's gate, six visitors opening the Attribution page at once left two grids unfinished after 15
minutes, two Grad-CAM cells said "This method failed" and the server reached 3.4 GB.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.browser.harness import CHROMIUM_ARGS, chromium_path, streamlit_process, wait_until_idle

VISITORS = 6
GRID = 3  # the Attribution page's default methods: Grad-CAM, Saliency, Integrated Gradients


def _vm_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def _grid_done(page, timeout_ms: int) -> None:
    """What a visitor waits for: every cell of the grid drawn, and the page no longer running."""
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length >= {GRID}",
        timeout=timeout_ms,
    )
    wait_until_idle(page, timeout_ms)


@pytest.mark.slow
@pytest.mark.skipif(chromium_path() is None, reason="needs chromium")
def test_six_visitors_on_attribution_and_two_on_other_pages_at_once(artifacts):
    from playwright.sync_api import sync_playwright

    photos = ["coffee", "rocket", "astronaut", "motorcycle", "camera", "clock"]
    with streamlit_process() as (url, pid), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            warm = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
            warm.goto(f"{url}/?image=chelsea")  # the server imports and loads the model once
            warm.get_by_text("tiger cat").first.wait_for(timeout=180_000)

            alone = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
            start = time.monotonic()
            alone.goto(f"{url}/Attribution?image=horse")
            _grid_done(alone, 300_000)
            one = time.monotonic() - start

            peak = [0]
            stop = threading.Event()

            def watch() -> None:  # the server's resident size, sampled while everyone works
                while not stop.wait(0.25):
                    peak[0] = max(peak[0], _vm_kb(pid, "VmRSS"))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            pages = [browser.new_context(viewport={"width": 1300, "height": 900}).new_page() for _ in photos]
            others = [browser.new_context(viewport={"width": 1300, "height": 900}).new_page() for _ in range(2)]
            start = time.monotonic()
            for page, photo in zip(pages, photos):
                page.goto(f"{url}/Attribution?image={photo}")
            others[0].goto(f"{url}/?image=brick")
            others[1].goto(f"{url}/Attention?model=shapes_vit&image=colorwheel")
            finished = []
            for page in pages:
                _grid_done(page, int((3 * (len(photos) + 2) * one + 180) * 1000))
                finished.append(time.monotonic() - start)
            for page in others:
                wait_until_idle(page, 300_000)
            stop.set()
            watcher.join(2)
            for i, page in enumerate(pages):
                page.screenshot(path=str(artifacts / f"shared_attribution_{i}.png"), full_page=True)
                main = page.get_by_test_id("stMain")
                assert main.get_by_test_id("stImage").count() == GRID
                assert page.get_by_text("This method failed").count() == 0
                assert page.get_by_text("Traceback").count() == 0
            others[1].screenshot(path=str(artifacts / "shared_attention.png"), full_page=True)
            for page in others:
                assert page.get_by_text("Traceback").count() == 0
            assert others[1].get_by_test_id("stImage").count() >= 1
        finally:
            browser.close()
    print(f"one alone {one:.1f} s; six at once finished at {', '.join(f'{t:.1f}' for t in finished)} s; "
          f"server peak {peak[0] / 1024:.0f} MB")
    # How long the last grid waited is printed, not asserted: it depends on how busy the machine is (on the same 2-core
    # VM it finished at 7.2 to 10 × one alone; Chromium's eight pages draw on the server's cores). What must hold does
    # not: every grid finished, within the generous deadline `_grid_done` was given, and nothing was mixed up.
    assert peak[0] / 1024 <= 2700, f"the server reached {peak[0] / 1024:.0f} MB"
