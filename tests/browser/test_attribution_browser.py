"""The Attribution page in a real browser: four methods, four maps."""

from __future__ import annotations

from tests.browser.harness import wait_until_idle


def test_four_methods_four_maps(app_url, page, artifacts):
    page.goto(f"{app_url}/Attribution?image=chelsea")
    main = page.get_by_test_id("stMain")
    main.get_by_text("Integrated Gradients", exact=True).first.wait_for()
    methods = main.get_by_test_id("stMultiSelect").first
    methods.locator("input").click()
    page.keyboard.type("Occlusion")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    # what the user waits for: the fourth cell drawn (a label "Occlusion" exists long before, hidden in the
    # collapsed "About the methods", and a locator on it resolved there while the grid was still computing)
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length >= 4", timeout=120_000
    )
    # Hover values live in the enlarged view of one cell.
    main.get_by_text("Inspect values (hover over the map)").click()
    page.wait_for_selector("[data-testid=stMain] .js-plotly-plot .heatmaplayer", state="attached")
    page.wait_for_timeout(500)
    wait_until_idle(page)
    page.screenshot(path=str(artifacts / "attribution.png"), full_page=True)
    assert main.get_by_test_id("stImage").count() == 4
    assert page.get_by_text("completeness error").count() >= 1
    assert page.get_by_text("Traceback").count() == 0
