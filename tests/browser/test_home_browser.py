"""The home page in a real browser: pick a sample photo, see the model's predictions."""

from __future__ import annotations

import re

import interp
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


def test_every_sample_button_shows_its_whole_label(app_url, page):
    """At the sidebar's default width each sample's button label fits, none cut to "…" (two "shapes_…" names were
    cut to the same "shapes_s…")."""
    page.goto(app_url)
    page.get_by_text(re.compile(r"tiger cat · \d+\.\d%")).wait_for()
    buttons = page.get_by_test_id("stSidebar").locator("[class*=st-key-sample_] button:visible")
    wait_until_idle(page)  # the sidebar draws its thumbnails one by one, the first time slowly
    page.wait_for_function("[...document.querySelectorAll('[data-testid=stSidebar] [class*=st-key-sample_] button')]"
                           f".filter(b => b.offsetHeight > 0).length >= {len(interp.SAMPLES)}")  # fmt: skip
    labels = buttons.evaluate_all(
        "els => els.map(b => { const box = b.querySelector('[data-testid=stMarkdownContainer]') || b;"
        " return [box.innerText, box.scrollWidth <= box.clientWidth]; })"
    )
    assert len(labels) == len(interp.SAMPLES)
    cut = [text for text, fits in labels if not fits]
    assert not cut, f"sample labels cut at the sidebar's width: {cut}"
    assert len({text for text, _ in labels}) == len(labels)  # no two buttons read the same


def test_uploads_through_the_browser_a_broken_file_then_a_photo(app_url, page, artifacts):
    """The real upload path (Chromium's file input, Streamlit's upload endpoint, the size cap, our callback): a file
    that is not an image gets one sentence and the last image stays; a photo in CMYK is then classified."""
    import io

    import skimage.data
    from PIL import Image

    page.goto(app_url)
    sidebar = page.get_by_test_id("stSidebar")
    page.get_by_text(re.compile(r"tiger cat · \d+\.\d%")).wait_for()
    # the sidebar holds three file inputs (image, weights, class names): the image's is the one under its label
    upload = sidebar.get_by_test_id("stFileUploader").filter(has_text="Upload an image").locator("input[type=file]")
    upload.set_input_files(files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a picture " * 40}])
    sidebar.get_by_test_id("stAlertContentError").wait_for()
    wait_until_idle(page)
    assert sidebar.get_by_test_id("stAlertContentError").count() == 1
    assert "notes.jpg" in sidebar.get_by_test_id("stAlertContentError").inner_text()
    assert page.get_by_text(re.compile(r"tiger cat · \d+\.\d%")).count() == 1  # what was shown stays

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).convert("CMYK").save(buffer, "JPEG", quality=90)
    upload.set_input_files(files=[{"name": "print.jpg", "mimeType": "image/jpeg", "buffer": buffer.getvalue()}])
    page.get_by_text(re.compile(r"espresso · \d+\.\d%")).wait_for()
    wait_until_idle(page)
    assert sidebar.get_by_test_id("stAlertContentError").count() == 0
    page.screenshot(path=str(artifacts / "home_upload.png"), full_page=True)
    assert page.get_by_test_id("stException").count() == 0 and page.get_by_text("Traceback").count() == 0
