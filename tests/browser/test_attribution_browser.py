"""The Attribution page in a real browser: four methods, four maps."""

from __future__ import annotations


def test_four_methods_four_maps(app_url, page, artifacts):
    page.goto(f"{app_url}/Attribution?image=chelsea")
    main = page.get_by_test_id("stMain")
    main.get_by_text("Integrated Gradients", exact=True).first.wait_for()
    methods = main.get_by_test_id("stMultiSelect").first
    methods.locator("input").click()
    page.keyboard.type("Occlusion")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    main.get_by_text("Occlusion", exact=True).last.wait_for()
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stMain] .js-plotly-plot .heatmaplayer').length >= 4", timeout=120_000
    )
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "attribution.png"), full_page=True)
    assert main.locator(".js-plotly-plot").count() == 4
    assert page.get_by_text("completeness error").count() >= 1
    assert page.get_by_text("Traceback").count() == 0
