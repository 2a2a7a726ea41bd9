"""The Text page in a real browser: the bundled model's heads for a negated sentence, one token's lines, the
statistics at the word "not", and the words Integrated Gradients credits."""

from __future__ import annotations

from tests.browser.harness import wait_until_idle


def test_heads_lines_statistics_and_ig_of_a_negated_sentence(app_url, page, artifacts):
    page.goto(f"{app_url}/Text?text=i+thought+the+film+was+not+dull")
    main = page.get_by_test_id("stMain")
    main.get_by_text("Prediction: positive").wait_for(timeout=180_000)
    wait_until_idle(page)
    main.locator(".js-plotly-plot").first.wait_for()
    main.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "text_heads.png"))

    main.get_by_role("tab", name="From a token").click()
    box = main.get_by_test_id("stSelectbox").filter(has=page.get_by_text("From the token", exact=True))
    box.click()
    page.get_by_role("option", name="6: not").click()
    wait_until_idle(page)
    main.get_by_text("Lines from the chosen token").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "text_lines.png"))

    main.get_by_role("tab", name="Head statistics").click()
    over = main.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Statistics over", exact=True))
    over.click()
    page.get_by_role("option", name="not", exact=True).click()
    wait_until_idle(page)
    table = main.get_by_test_id("stDataFrame")
    table.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "text_stats.png"))

    main.get_by_role("tab", name="Integrated Gradients").click()
    main.get_by_text("completeness error").wait_for()
    main.get_by_text("completeness error").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "text_ig.png"))
    strongest = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=stMain] span[title]')]
                 .filter(s => s.offsetParent !== null)
                 .map(s => [s.textContent, parseFloat(s.title)])
                 .sort((a, b) => b[1] - a[1])[0]"""
    )
    assert strongest[0] in ("not", "dull"), strongest
    assert page.get_by_text("Traceback").count() == 0
