"""The Attention page in a real browser on the bundled shapes ViT: the head grid, rollout, a clicked patch and a
clicked head."""

from __future__ import annotations

import re

from tests.browser.harness import wait_until_idle


def test_heads_rollout_and_patch_click(app_url, page, artifacts):
    page.goto(f"{app_url}/Attention?model=shapes_vit&image=chelsea")
    main = page.get_by_test_id("stMain")
    main.get_by_text("Every head of every layer").wait_for(timeout=120_000)
    wait_until_idle(page)
    # an image shows a placeholder until the browser has fetched it: on a server busy with the tests before it, the
    # run had ended and the two strips were still grey
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length >= 2", timeout=120_000
    )
    page.screenshot(path=str(artifacts / "attention_heads.png"), full_page=True)
    assert main.get_by_test_id("stImage").count() >= 2

    main.get_by_role("tab", name="Rollout and class relevance").click()
    main.get_by_text("Chefer relevance").first.wait_for()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "attention_rollout.png"))

    main.get_by_role("tab", name="From a patch").click()
    main.get_by_text(re.compile(r"Where patch \(4, 4\) attends")).wait_for()
    plot = main.locator(".js-plotly-plot").filter(has=page.locator(".scatterlayer")).first
    plot.scroll_into_view_if_needed()
    plot.locator(".scatterlayer .point").first.click(force=True)  # the invisible marker over patch (0, 0)
    main.get_by_text(re.compile(r"Where patch \(0, 0\) attends")).wait_for(timeout=30_000)
    wait_until_idle(page)
    page.screenshot(path=str(artifacts / "attention_patch.png"))

    main.get_by_role("tab", name="Head statistics").click()
    main.get_by_text("mean attention distance (pixels)").wait_for()
    main.get_by_text("Click a dot to see one head").wait_for()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "attention_stats.png"))
    # Clicking a dot picks its head: the 6th dot is layer 1, head 1 (4 heads a layer); it becomes the enlarged head.
    distance = main.locator(".js-plotly-plot:visible").filter(has=page.locator(".scatterlayer")).first
    dot = distance.locator(".scatterlayer .point").nth(5)
    dot.evaluate("e => e.scrollIntoView({block: 'center'})")  # not under the app's sticky header
    dot.click(force=True)
    main.get_by_text(re.compile(r"Layer 1, head 1 looks [\d.]+ px away on average")).wait_for(timeout=30_000)
    main.get_by_text("where patch (0, 0) looks").wait_for()  # the patch clicked under *From a patch*
    wait_until_idle(page)
    assert "attn_layer=1" in page.url and "attn_head=1" in page.url
    page.screenshot(path=str(artifacts / "attention_stats_head.png"), full_page=True)
    assert page.get_by_text("Traceback").count() == 0
