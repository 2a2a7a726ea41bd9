"""A link reproduces a view: opened in a fresh browser it shows the same grid, and its share box gives it back.

The link names a page, the model, a photo, two methods, two classes, three settings and two display options; a
second browser (a fresh session, nothing shared but the link) opened on the link the first one's share box shows
must draw the same pixels.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import expect

from tests.browser.harness import enter_text, wait_until_idle

QUERY = ("model=efficientnet_lite0&image=coffee&methods=occlusion,integrated_gradients&targets=967,968"
         "&set=integrated_gradients.steps%3D16&set=occlusion.window%3D64&set=occlusion.stride%3D64&alpha=0.7"
         "&cmap=viridis")  # fmt: skip
IMAGES = "document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length >= 4"


def _grid(page) -> list[bytes]:
    """Each cell's pixels as Chromium draws them, decoded: two screenshots of the same pixels are not always the
    same PNG bytes (the encoder's choices differed between two browsers on one server). Taken once every image has
    loaded and nothing is stale, and again until two rounds agree: on a busy machine a cell caught mid-paint or
    mid-fade differed from the same cell a moment later."""
    import io

    from PIL import Image

    page.wait_for_function(IMAGES, timeout=180_000)
    wait_until_idle(page)
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')]"
        ".every(i => i.complete && i.naturalWidth > 0) && !document.querySelector('[data-stale=true]')",
        timeout=60_000,
    )
    images = page.get_by_test_id("stMain").get_by_test_id("stImage")
    last = None
    for _ in range(10):
        shots = [images.nth(i).screenshot() for i in range(images.count())]
        cells = [Image.open(io.BytesIO(shot)).convert("RGB").tobytes() for shot in shots]
        if cells == last:
            break
        last = cells
        page.wait_for_timeout(300)
    return last


def _differences(first: list[bytes], second: list[bytes]) -> str:
    """How far apart two grids are, for the assertion's message."""
    import numpy as np

    if len(first) != len(second):
        return f"{len(first)} cells against {len(second)}"
    out = []
    for i, (a, b) in enumerate(zip(first, second)):
        if a != b:
            x, y = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
            if x.shape != y.shape:
                out.append(f"cell {i}: {x.size} against {y.size} values")
            else:
                d = np.abs(x.astype(int) - y)
                out.append(f"cell {i}: {np.count_nonzero(d)} of {d.size} values differ, by up to {d.max()}")
    return "; ".join(out)


def _slider_value(main, label: str) -> str:
    slider = main.get_by_test_id("stSlider").filter(has_text=label)
    return slider.get_by_test_id("stSliderThumbValue").inner_text().strip()


def _query(url: str) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in parse_qs(urlparse(url).query).items()}


def test_a_link_opened_in_a_fresh_browser_shows_the_same_grid(app_url, page, artifacts):
    page.goto(f"{app_url}/Attribution?{QUERY}")
    first = _grid(page)
    main = page.get_by_test_id("stMain")
    assert len(first) == 4  # 2 classes × 2 methods
    for text in ("Occlusion", "Integrated Gradients", "espresso", "cup"):
        assert main.get_by_text(text).first.is_visible(), text
    assert page.get_by_text("Traceback").count() == 0
    main.get_by_text("Method settings").click()  # one tab per method, its widgets from the method's schema
    main.get_by_role("tab", name="Integrated Gradients").click()
    assert _slider_value(main, "Integrated Gradients steps") == "16"
    main.get_by_role("tab", name="Occlusion").click()
    assert _slider_value(main, "Occlusion window (px)") == "64"
    expander = main.get_by_test_id("stExpander").filter(has_text="Method settings")
    expander.screenshot(path=str(artifacts / "permalink_settings.png"))
    main.get_by_text("Method settings").click()  # closed again: the grid's screenshots below match the fresh page
    page.get_by_test_id("stSidebar").get_by_text("Share this view").click()
    shared = page.get_by_test_id("stSidebar").get_by_test_id("stCode").inner_text().strip()
    page.screenshot(path=str(artifacts / "permalink_first.png"), full_page=True)
    assert urlparse(shared).path.rstrip("/").endswith("/Attribution")
    assert _query(shared) == _query(f"?{QUERY}")  # the share box gives back the view, the same parameters

    context = page.context.browser.new_context(viewport=page.viewport_size)  # no cookies, storage or session
    try:
        fresh = context.new_page()
        fresh.set_default_timeout(90_000)
        fresh.goto(shared.replace(urlparse(shared).netloc, urlparse(app_url).netloc))
        second = _grid(fresh)
        fresh.screenshot(path=str(artifacts / "permalink_second.png"), full_page=True)
        assert second == first, _differences(first, second)  # pixel for pixel: the same maps, colours, overlay
    finally:
        context.close()

    # moving to another page and back keeps the view (the session keeps it; that page's URL has model and image)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Home", exact=True).click()
    page.get_by_role("heading", name="Look inside an image classifier").wait_for()
    wait_until_idle(page)
    page.wait_for_url("**image=coffee**")
    page.get_by_test_id("stSidebar").get_by_role("link", name="Attribution", exact=True).click()
    back = _grid(page)
    assert back == first, _differences(first, back)
    page.wait_for_url("**methods=occlusion**")
    assert _query(page.url) == _query(f"?{QUERY}")


def test_trust_scores_from_a_link_show_a_scoreboard_and_curves(app_url, page, artifacts):
    page.goto(f"{app_url}/Attribution?model=efficientnet_lite0&image=chelsea&methods=grad_cam,saliency&scores=1")
    main = page.get_by_test_id("stMain")
    main.get_by_text("Scoreboard").wait_for(timeout=180_000)
    wait_until_idle(page)
    assert main.get_by_text("On this image").first.is_visible()
    assert main.get_by_text("random map").count() >= 2  # under each map
    main.get_by_text("Inspect values").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=stMain] .js-plotly-plot').length >= 3")
    wait_until_idle(page)
    main.get_by_text("Scoreboard").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "trust_scoreboard.png"))
    _as_wide_as(main.get_by_test_id("stDataFrame").filter(visible=True).first,
                main.get_by_test_id("stMarkdown").filter(has_text="On this image"))
    main.get_by_test_id("stPlotlyChart").last.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "trust_curves.png"))
    assert page.get_by_text("Traceback").count() == 0
    # the sanity check beside it goes into the address too, so that it can be shared
    main.get_by_text("Compare with a second model").click()
    main.get_by_text("random initialisation (untrained)").wait_for(timeout=180_000)
    wait_until_idle(page)
    query = _query(page.url)
    assert query.get("compare") == ["true"] and query.get("second") in (None, ["untrained"]), query  # the default
    assert main.get_by_text("Trust scores are computed for efficientnet_lite0").count() == 1


def test_which_method_to_trust_on_the_failures_page(app_url, page, artifacts):
    page.goto(f"{app_url}/Failures?model=shapes_cnn")
    main = page.get_by_test_id("stMain")
    main.get_by_role("tab", name="Which method to trust").click()
    enter_text(page, main.get_by_label("Images", exact=True), "6")
    main.get_by_role("button", name="Score the methods").click()
    main.get_by_text("gains the most over a random map").wait_for(timeout=180_000)
    wait_until_idle(page)
    page.wait_for_function("document.querySelectorAll('[data-testid=stMain] .js-plotly-plot').length >= 1")
    main.get_by_text("gains the most over a random map").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "trust_dataset.png"))
    assert main.get_by_text("over 6 images").count() == 1
    _as_wide_as(main.get_by_test_id("stDataFrame").filter(visible=True).first,
                main.get_by_test_id("stMarkdown").filter(has_text="gains the most"))
    assert page.get_by_text("Traceback").count() == 0


ATTENTION = "model=shapes_vit&image=shapes_star&attn_view=From+a+patch&patch=2,3&attn_layer=1&attn_head=2&target=1"


def test_an_attention_link_opens_the_same_tab_patch_and_head_and_follows_the_visitor(app_url, page, artifacts):
    """The Attention page's own choices travel too: the open tab, the patch, the enlarged layer and head, the class;
    what the visitor changes next (a tab) is in the URL and the share box at once, and a fresh browser opens it."""
    page.goto(f"{app_url}/Attention?{ATTENTION}")
    main = page.get_by_test_id("stMain")
    main.get_by_text(re.compile(r"Where patch \(2, 3\) attends")).wait_for(timeout=120_000)
    wait_until_idle(page)
    assert main.get_by_role("tab", name="From a patch").get_attribute("aria-selected") == "true"
    page.screenshot(path=str(artifacts / "permalink_attention.png"))
    assert page.get_by_text("Traceback").count() == 0

    main.get_by_role("tab", name="Layers × heads").click()  # the first tab, the default: it leaves the URL
    page.wait_for_function("!location.search.includes('attn_view')")
    wait_until_idle(page)
    main.locator(".gtitle", has_text="layer 1, head 2").wait_for()  # the enlarged map of the linked layer and head
    page.get_by_test_id("stSidebar").get_by_text("Share this view").click()
    box = page.get_by_test_id("stSidebar").get_by_test_id("stCode")
    expect(box).not_to_contain_text("attn_view", timeout=30_000)  # the box follows the visitor's tab
    shared = box.inner_text().strip()
    expected = _query(f"?{ATTENTION}")
    del expected["attn_view"]
    assert _query(shared) == expected, shared

    # another page's URL carries the model and image, none of this page's own choices
    page.get_by_test_id("stSidebar").get_by_role("link", name="Features", exact=True).click()
    page.wait_for_url("**/Features**")
    page.get_by_test_id("stMain").get_by_text("Filters of the first convolution").first.wait_for(timeout=120_000)
    wait_until_idle(page)
    assert {"model", "image"} <= set(_query(page.url)) and not {"attn_layer", "patch", "target"} & set(_query(page.url))

    context = page.context.browser.new_context(viewport=page.viewport_size)
    try:
        fresh = context.new_page()
        fresh.set_default_timeout(90_000)
        fresh.goto(shared.replace(urlparse(shared).netloc, urlparse(app_url).netloc))
        fresh_main = fresh.get_by_test_id("stMain")
        fresh_main.get_by_text("Every head of every layer").wait_for(timeout=120_000)
        wait_until_idle(fresh)
        assert fresh_main.get_by_role("tab", name="Layers × heads").get_attribute("aria-selected") == "true"
        fresh_main.get_by_role("tab", name="From a patch").click()
        fresh_main.get_by_text(re.compile(r"Where patch \(2, 3\) attends")).wait_for()
        assert fresh.get_by_text("Traceback").count() == 0
    finally:
        context.close()


def test_what_a_link_could_not_use_is_said_where_the_visitor_looks(app_url, page, artifacts):
    """A link with a typo in the model and a method this app does not have opens the rest of the view, and a
    notification at the top says what was dropped (the share box, far down the sidebar, says it too)."""
    page.goto(f"{app_url}/Attribution?model=resnet_5O&image=coffee&methods=grad_cam,magic")
    toasts = page.get_by_test_id("stToast")
    toasts.nth(1).wait_for(timeout=180_000)  # as the page starts, before its maps: one for the model, one for magic
    page.get_by_test_id("stMain").get_by_test_id("stImage").first.wait_for(timeout=180_000)
    wait_until_idle(page)
    for more in toasts.get_by_text("view more").all():  # a long notification is folded
        more.click()
    text = " ".join(toasts.all_inner_texts())
    assert toasts.count() == 2 and "resnet_5O" in text and "did you mean resnet50?" in text and "magic" in text, text
    page.screenshot(path=str(artifacts / "permalink_dropped.png"))
    assert page.get_by_text("Traceback").count() == 0


def test_a_value_a_bound_widget_cannot_take_is_said_too(app_url, page, artifacts):
    """The widgets Streamlit binds to the URL (the Attention page's tab, layer, the rollout's discard ratio) drop a
    value they cannot take; the visitor is told which, and the address bar no longer carries it."""
    page.goto(f"{app_url}/Attention?model=shapes_vit&image=shapes_star&attn_layer=99&attn_head=1&attn_discard=5"
              "&attn_view=Rollout")
    toasts = page.get_by_test_id("stToast")
    toasts.nth(2).wait_for(timeout=180_000)
    page.get_by_test_id("stMain").get_by_text("Every head of every layer").wait_for(timeout=120_000)
    wait_until_idle(page)
    for more in toasts.get_by_text("view more").all():
        more.click()
    text = " ".join(toasts.all_inner_texts())
    assert toasts.count() == 3 and "tab “Rollout”" in text, text
    assert "Layer “99”" in text and "Discard ratio “5”" in text, text
    assert "Head “" not in text, text  # attn_head=1 was used
    query = _query(page.url)
    assert query.get("attn_head") == ["1"] and not {"attn_layer", "attn_discard", "attn_view"} & set(query), query
    page.screenshot(path=str(artifacts / "permalink_bound_dropped.png"))
    assert page.get_by_text("Traceback").count() == 0


def _as_wide_as(table, text) -> None:
    """A score table (the one shown: another tab may hold others) spans the page like the sentence reading it:
    beside the chart, its last columns (the answer) were cut off at a desktop's width."""
    assert table.bounding_box()["width"] >= 0.95 * text.bounding_box()["width"]
