"""The Failures page in a real browser: scan the shapes world, open the gallery, ask why for one mistake."""

from __future__ import annotations

from tests.browser.harness import wait_until_idle


def test_scan_gallery_and_contrastive_view(app_url, page, artifacts):
    page.goto(f"{app_url}/Failures?model=shapes_cnn")
    main = page.get_by_test_id("stMain")
    main.get_by_role("tab", name="Scan").click()
    main.get_by_role("button", name="Start or resume the scan").click()
    main.get_by_text("Done:").wait_for(timeout=180_000)
    wait_until_idle(page)
    page.screenshot(path=str(artifacts / "failures_scan.png"), full_page=True)
    main.get_by_role("tab", name="Gallery").click()
    main.get_by_text("Top confusion pairs").wait_for()
    main.get_by_role("button", name="Why?").first.click()
    main.get_by_text("as the model sees it").wait_for(timeout=120_000)
    wait_until_idle(page)
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "failures_gallery.png"), full_page=True)
    main.get_by_text("as the model sees it").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "failures_why.png"))
    assert main.get_by_text("predicted:").count() >= 1 and main.get_by_text("true:").count() >= 1
    assert page.get_by_text("Traceback").count() == 0
