"""Moving between pages keeps the visitor's model and image, and a shared link keeps them as its visitor moves on.

Picking shapes_cnn on Home, then Attribution, Home, Attribution, Home, Failures, Home read cnn, lite0, cnn, lite0,
cnn, lite0 before the sidebar restored its kept choice on every page.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from tests.browser.harness import wait_until_idle

PAGES = ["Attribution", "Attention", "Failures", "Concepts", "Features", "Home", "Attribution", "Home"]
TITLES = {"Home": "Look inside an image classifier", "Failures": "Failure gallery"}


def _model(page) -> str:
    return page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model").input_value()


def _params(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def _go(page, name: str) -> None:
    page.get_by_test_id("stSidebar").get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=TITLES.get(name, name)).first.wait_for()
    wait_until_idle(page)
    try:  # the page's script writes the choice back into the URL as it runs
        page.wait_for_url(lambda url: (urlparse(url).path.strip("/") or "Home") == name
                          and "model=" in url and "image=" in url, timeout=15_000)  # fmt: skip
    except Exception:  # noqa: BLE001 - the assertion on the URL says what is missing
        pass


def test_the_chosen_model_and_image_stay_on_every_page(app_url, page, artifacts):
    page.goto(app_url)
    page.get_by_text("tiger cat").first.wait_for()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("combobox", name="Model").click()
    page.get_by_role("option", name="shapes_cnn").click()
    page.wait_for_url("**model=shapes_cnn**")  # the choice has reached the script before the next click
    wait_until_idle(page)
    sidebar.get_by_role("button", name="rocket", exact=True).click()
    page.wait_for_url("**image=rocket**")
    wait_until_idle(page)
    seen = []
    for name in PAGES:
        _go(page, name)
        seen.append((name, _model(page), _params(page).get("model"), _params(page).get("image")))
    page.screenshot(path=str(artifacts / "navigation_home.png"), full_page=True)
    assert seen == [(name, "shapes_cnn", "shapes_cnn", "rocket") for name in PAGES], seen
    assert page.get_by_text("Traceback").count() == 0


def test_a_shared_link_opens_its_view_and_keeps_it_on_other_pages(app_url, page, artifacts):
    page.goto(f"{app_url}/Attribution?model=shapes_cnn&image=coffee")
    main = page.get_by_test_id("stMain")
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length >= 3", timeout=180_000
    )
    wait_until_idle(page)
    assert _model(page) == "shapes_cnn"
    assert main.get_by_test_id("stImage").count() == 3
    page.screenshot(path=str(artifacts / "shared_link_attribution.png"), full_page=True)
    for name in ("Home", "Concepts", "Attribution"):
        _go(page, name)
        assert (_model(page), _params(page).get("image")) == ("shapes_cnn", "coffee"), name
