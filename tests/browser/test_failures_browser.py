"""The Failures page in a real browser: scan the shapes world, open the gallery, ask why for one mistake, and send
that explanation to a fresh browser as a link."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from playwright.sync_api import expect

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

    # the explained mistake is in the link; a fresh browser opened on it shows the same explanation
    page.wait_for_function("location.search.includes('why=')")
    page.get_by_test_id("stSidebar").get_by_text("Share this view").click()
    shared = page.get_by_test_id("stSidebar").get_by_test_id("stCode").inner_text().strip()
    (why,) = parse_qs(urlparse(shared).query)["why"]
    context = page.context.browser.new_context(viewport=page.viewport_size)
    try:
        fresh = context.new_page()
        fresh.set_default_timeout(90_000)
        fresh.goto(shared.replace(urlparse(shared).netloc, urlparse(app_url).netloc))
        fresh.get_by_test_id("stMain").get_by_text("as the model sees it").wait_for(timeout=120_000)
        wait_until_idle(fresh)
        assert fresh.get_by_test_id("stMain").get_by_text(why.rsplit("/", 1)[-1]).count() >= 1
        fresh.get_by_test_id("stMain").get_by_text("as the model sees it").scroll_into_view_if_needed()
        fresh.screenshot(path=str(artifacts / "failures_why_link.png"))
        assert fresh.get_by_text("Traceback").count() == 0
    finally:
        context.close()


def test_a_zip_uploaded_through_the_browser_becomes_a_dataset(app_url, page, artifacts):
    """The page's zip upload, through Chromium's file input: a file that is not a zip gets one sentence; a zip of
    two class folders (with a stray text file) becomes a dataset of this session, browsable at once."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    def png(value: int) -> bytes:
        out = io.BytesIO()
        Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(out, "PNG")
        return out.getvalue()

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for cls, value in (("dark", 30), ("light", 220)):
            for i in range(3):
                z.writestr(f"mine/{cls}/{i}.png", png(value + i))
        z.writestr("mine/README.txt", "not an image")

    page.goto(f"{app_url}/Failures?model=shapes_cnn")
    main = page.get_by_test_id("stMain")
    main.get_by_role("button", name="Use your own images (zip)").click()
    upload = page.get_by_test_id("stFileUploader").filter(has_text="one folder of images per class")
    upload.locator("input[type=file]").set_input_files(
        files=[{"name": "photos.zip", "mimeType": "application/zip", "buffer": b"PK but not really a zip" * 10}])
    main.get_by_text("photos.zip is not a zip file").wait_for()
    wait_until_idle(page)

    upload.locator("input[type=file]").set_input_files(
        files=[{"name": "mine.zip", "mimeType": "application/zip", "buffer": archive.getvalue()}])
    # the upload is read and chosen (closing the popover before that would cancel the upload)
    main.get_by_text("No scan of Upload · mine.zip").wait_for()  # the gallery tab, on the new dataset
    wait_until_idle(page)
    expect(upload).to_be_hidden(timeout=10_000)  # the popover closed itself once the zip was taken
    main.get_by_role("tab", name="Browse").click()
    main.get_by_text("Skipped 1 entry of mine.zip (not images, or unsafe names): mine/README.txt").wait_for()
    wait_until_idle(page)
    assert main.get_by_text("not a zip file").count() == 0  # the good upload cleared the error
    expect(main.get_by_test_id("stImage")).to_have_count(6, timeout=30_000)  # drawn a moment after the note above
    page.screenshot(path=str(artifacts / "failures_zip.png"), full_page=True)
    assert page.get_by_test_id("stException").count() == 0 and page.get_by_text("Traceback").count() == 0

    # a zip of one photo: every tab works (the trust tab once asked for a number between 2 and 1 and broke the page)
    single = io.BytesIO()
    with zipfile.ZipFile(single, "w") as z:
        z.writestr("one/cat/0.png", png(120))
    main.get_by_role("button", name="Use your own images (zip)").click()
    upload.locator("input[type=file]").set_input_files(
        files=[{"name": "one.zip", "mimeType": "application/zip", "buffer": single.getvalue()}])
    main.get_by_text("No scan of Upload · one.zip").wait_for(state="attached")  # in the Gallery tab, not the open one
    wait_until_idle(page)
    page.keyboard.press("Escape")
    main.get_by_role("tab", name="Which method to trust").click()
    main.get_by_text("Ranking methods on a dataset needs at least 2 images; Upload · one.zip has 1 image.").wait_for()
    assert page.get_by_test_id("stException").count() == 0 and page.get_by_text("Traceback").count() == 0
    assert main.get_by_text("This app has encountered an error").count() == 0
