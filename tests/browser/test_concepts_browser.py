"""The Concepts page in a real browser: TCAV of the shapes world's demo concepts for the class 'star'."""

from __future__ import annotations

from tests.browser.harness import wait_until_idle


def test_tcav_run_shows_scores_and_verdicts(app_url, page, artifacts):
    page.goto(f"{app_url}/Concepts?model=shapes_cnn")
    main = page.get_by_test_id("stMain")
    main.get_by_text("Target class", exact=True).wait_for()
    target = main.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Target class", exact=True))
    target.click()
    page.get_by_role("option", name="star", exact=True).click()
    wait_until_idle(page)
    main.get_by_role("button", name="Run TCAV").click()
    main.get_by_text("Most concept-aligned").wait_for(timeout=180_000)
    wait_until_idle(page)
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "concepts.png"), full_page=True)
    main.get_by_text("Most concept-aligned").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "concepts_images.png"))
    assert main.get_by_text("TCAV per concept and layer").count() >= 1
    assert main.get_by_test_id("stDataFrame").count() >= 1
    assert page.get_by_text("Traceback").count() == 0
