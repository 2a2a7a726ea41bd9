"""The Concepts page in a real browser: TCAV of the shapes world's demo concepts for the class 'star'."""

from __future__ import annotations

import zipfile

from tests.browser.harness import enter_text, wait_until_idle


def test_tcav_run_shows_scores_and_verdicts_and_its_link_shows_them_again(app_url, page, artifacts):
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

    # the address bar is the link to these results: opened in a fresh browser session, it shows them without a click
    link = page.url
    assert "tcav=1" in link and "target=3" in link, link
    verdicts = main.get_by_test_id("stDataFrame").first.inner_text()
    fresh = page.context.browser.new_page(viewport=page.viewport_size)
    fresh.goto(link)
    again = fresh.get_by_test_id("stMain")
    again.get_by_text("Most concept-aligned").wait_for(timeout=180_000)
    wait_until_idle(fresh)
    again.get_by_text("TCAV per concept and layer").first.wait_for()  # the chart drawn, not only its frame
    fresh.screenshot(path=str(artifacts / "concepts_from_link.png"), full_page=True)
    assert again.get_by_test_id("stDataFrame").first.inner_text() == verdicts
    fresh.close()


def test_a_set_one_visitor_saves_is_not_seen_by_another_until_they_share_it(app_url, page, artifacts):
    """Two browsers on one server: a concept set (made from images a visitor may have uploaded) is theirs alone;
    once they press Share, the other browser lists it, marked shared, with no Delete button."""
    page.goto(f"{app_url}/Concepts?model=shapes_cnn")
    main = page.get_by_test_id("stMain")
    main.get_by_text("New concept set").click()
    enter_text(page, main.get_by_label("Name", exact=True), "ada's stripes")
    main.get_by_role("button", name="Save the set").click()
    main.get_by_text("for you alone").wait_for(timeout=60_000)

    other = page.context.browser.new_page(viewport=page.viewport_size)
    try:
        other.goto(f"{app_url}/Concepts?model=shapes_cnn")
        theirs = other.get_by_test_id("stMain")
        theirs.get_by_text("Concept library").click()
        theirs.get_by_text("checkerboard", exact=True).wait_for(timeout=60_000)  # a demo set: the library is drawn
        assert theirs.get_by_text("ada's stripes").count() == 0

        main.get_by_text("Concept library").click()
        main.get_by_text("30 images · yours").wait_for()  # listed at once, above the form it was saved from
        with page.expect_download() as download:  # her own set comes first; it downloads as a zip of its images
            main.get_by_role("button", name="Download", exact=True).first.click()
        with zipfile.ZipFile(download.value.path()) as z:
            assert download.value.suggested_filename == "ada-s-stripes.zip"
            assert len(z.namelist()) == 30 and all(n.endswith(".png") for n in z.namelist())
        main.get_by_role("button", name="Share", exact=True).click()
        main.get_by_text("Shared the set").wait_for(timeout=60_000)
        page.screenshot(path=str(artifacts / "concepts_shared.png"))

        other.reload()
        theirs.get_by_text("Concept library").click()
        theirs.get_by_text("ada's stripes", exact=True).wait_for(timeout=60_000)
        wait_until_idle(other)
        other.screenshot(path=str(artifacts / "concepts_shared_other.png"))
        assert theirs.get_by_text("30 images · shared").count() >= 1
        assert theirs.get_by_role("button", name="Delete").count() == 0  # demo sets and hers: not theirs to delete
        assert other.get_by_text("Traceback").count() == 0

        main.get_by_role("button", name="Delete", exact=True).click()  # hers to delete: the server's library as before
        main.get_by_text("Deleted the set").wait_for(timeout=60_000)
    finally:
        other.close()


def test_a_set_from_an_uploaded_zip_is_read_at_set_size_and_says_what_it_left_out(app_url, page, artifacts):
    """A zip of large photos, a repeated one and a text file: the page says what it skipped and how many pictures
    repeat, and the saved set's images (downloaded back) are at the size a set keeps, not the photos' 1600 pixels."""
    import io

    from PIL import Image

    from interp.concepts.library import STORED_SIDE

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for i in range(4):
            photo = io.BytesIO()
            Image.new("RGB", (1600, 1200), (40 * i, 90, 200 - 40 * i)).save(photo, "JPEG")
            z.writestr(f"stripes/{i}.jpg", photo.getvalue())
            if i == 0:
                z.writestr("stripes/again.jpg", photo.getvalue())
        z.writestr("stripes/notes.txt", "not a picture")
    page.goto(f"{app_url}/Concepts?model=shapes_cnn")
    main = page.get_by_test_id("stMain")
    main.get_by_text("New concept set").click()
    main.get_by_text("Upload images or a zip", exact=True).click()
    wait_until_idle(page)
    main.locator("input[type=file]").set_input_files(
        files=[{"name": "photos.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()}])  # fmt: skip
    main.get_by_text("5 images ready.").wait_for(timeout=60_000)
    assert main.get_by_text("Skipped 1 file that is not a readable image: stripes/notes.txt.").count() == 1
    enter_text(page, main.get_by_label("Name", exact=True), "uploaded photos")
    main.get_by_role("button", name="Save the set").click()
    saved = main.get_by_text("Saved 'uploaded photos' with 4 images (1 repeated picture left out), for you alone.")
    saved.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "concepts_upload.png"))
    main.get_by_text("Concept library").click()
    main.get_by_text("4 images · yours").wait_for()
    with page.expect_download() as download:
        main.get_by_role("button", name="Download", exact=True).first.click()
    with zipfile.ZipFile(download.value.path()) as z:
        sizes = {Image.open(io.BytesIO(z.read(n))).size for n in z.namelist()}
    assert sizes == {(STORED_SIDE, STORED_SIDE * 3 // 4)}, sizes
    assert page.get_by_text("Traceback").count() == 0
