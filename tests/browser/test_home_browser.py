"""The home page in a real browser: pick a sample photo, see the model's predictions."""

from __future__ import annotations

import re

from tests.browser.harness import wait_until_idle


def test_pick_sample_and_see_predictions(app_url, page, artifacts):
    page.goto(app_url)
    sidebar = page.get_by_test_id("stSidebar")
    # The default (bundled model, chelsea) classifies as soon as the page loads.
    page.get_by_text(re.compile(r"tiger cat · \d+\.\d%")).wait_for()
    sidebar.get_by_role("button", name="coffee", exact=True).click()
    page.get_by_text(re.compile(r"espresso · \d+\.\d%")).wait_for()
    page.wait_for_selector(".js-plotly-plot .bars", state="attached")
    wait_until_idle(page)
    page.screenshot(path=str(artifacts / "home.png"), full_page=True)
    assert page.get_by_text("Traceback").count() == 0
    # The choice is in the URL, so the link can be shared.
    assert "image=coffee" in page.url
