"""The Features page in a real browser, on the bundled ImageNet model: pick a channel from the feature maps, watch
the optimiser draw it (pixels and Fourier side by side), stop a run and keep its image, and lay the bundled photos
out across the channel's spectrum."""

from __future__ import annotations

import json
import re
import zipfile

from playwright.sync_api import expect

from tests.browser.harness import wait_until_idle


def test_pick_a_channel_visualise_it_stop_and_see_its_spectrum(app_url, page, artifacts):
    page.goto(f"{app_url}/Features?model=efficientnet_lite0&image=chelsea&layer=blocks.3")
    main = page.get_by_test_id("stMain")
    main.get_by_text("blocks.3 has 80 channels").wait_for(timeout=180_000)
    wait_until_idle(page)
    main.locator(".js-plotly-plot").first.wait_for()  # the feature maps
    pills = main.get_by_test_id("stButtonGroup").get_by_role("radio")
    third = pills.nth(2)
    channel = third.inner_text().strip().lstrip("#")
    third.click()
    wait_until_idle(page)
    page.wait_for_url(f"**unit={channel}**")  # the picked channel is the unit, and the link says so
    # the address bar can change a moment before the number box is drawn again: wait for the box, do not read it once
    expect(main.get_by_test_id("stNumberInput").filter(has_text="Channel of blocks.3").locator("input")).to_have_value(
        channel, timeout=30_000)
    main.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "features_maps.png"))

    main.get_by_role("button", name="Visualise").click()
    main.get_by_text("256 steps in").first.wait_for(timeout=240_000)
    main.get_by_text("256 steps in").nth(1).wait_for(timeout=240_000)
    wait_until_idle(page)
    main.get_by_test_id("stDownloadButton").nth(1).wait_for(timeout=60_000)  # drawn after both results
    assert main.get_by_test_id("stDownloadButton").count() == 2
    main.get_by_text("256 steps in").first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "features_visualised.png"))

    # a longer run, stopped part way: the last image stays, with the step it reached
    steps = main.get_by_test_id("stSlider").filter(has_text="Steps")
    steps.get_by_role("slider").focus()
    page.keyboard.press("End")  # 1024 steps
    wait_until_idle(page)
    expect(steps.get_by_test_id("stSliderThumbValue")).to_have_text("1024", timeout=30_000)
    main.get_by_role("button", name="Visualise").click()
    # the progress text changes every 16 steps: wait for any of them, not for one that may come and go unseen
    main.get_by_text(re.compile(r"Step \d+ of 1024")).first.wait_for(timeout=120_000)
    main.get_by_role("button", name="Stop").click()
    main.get_by_text("Stopped at step").first.wait_for(timeout=60_000)
    wait_until_idle(page)
    main.get_by_text("Stopped at step").first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "features_stopped.png"))
    main.get_by_text("this is the last image").first.wait_for(timeout=60_000)

    main.get_by_role("button", name="Find the examples").click()
    main.get_by_text("images; the unit's values go from").wait_for(timeout=120_000)
    wait_until_idle(page)
    for title in ("Negative optimised", "Minimum", "Maximum", "Positive optimised"):
        main.get_by_text(title, exact=True).first.wait_for(timeout=60_000)
    main.get_by_text("Positive optimised", exact=True).scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "features_spectrum.png"))
    assert page.get_by_text("Traceback").count() == 0
    assert main.get_by_test_id("stAlert").filter(has_text="went wrong").count() == 0

    # the download holds the crops and spectrum.json, as the CLI writes them (its zip is made when clicked: click the
    # button of the finished run, whose file the server still holds)
    wait_until_idle(page)
    button = main.get_by_role("button", name="Download the examples")
    expect(button).to_be_enabled(timeout=30_000)
    with page.expect_download() as download:
        button.click()
    with zipfile.ZipFile(download.value.path()) as z:
        summary = json.loads(z.read("spectrum.json"))
        assert summary["model"] == "efficientnet_lite0"
        assert {*summary["files"], "spectrum.json"} == set(z.namelist())

    # the address bar is the link to these examples: a fresh browser session opening it finds them without a click
    assert "spectrum=1" in page.url, page.url
    fresh = page.context.browser.new_page(viewport=page.viewport_size)
    fresh.goto(page.url)
    again = fresh.get_by_test_id("stMain")
    again.get_by_text("images; the unit's values go from").wait_for(timeout=180_000)
    wait_until_idle(fresh)
    again.get_by_text("Maximum", exact=True).first.scroll_into_view_if_needed()
    fresh.screenshot(path=str(artifacts / "features_spectrum_from_link.png"))
    fresh.close()


def test_two_visitors_asking_for_one_visualisation_compute_it_once(app_url, page, artifacts):
    """A class opening one link: the second browser's Visualise waits for the first's run, says so, and then shows
    the same image with the same value, computed once."""
    url = f"{app_url}/Features?model=shapes_cnn&image=shapes_star"
    other = page.context.browser.new_page(viewport=page.viewport_size)
    try:
        for p in (page, other):
            p.goto(url)
            main = p.get_by_test_id("stMain")
            main.get_by_role("button", name="Visualise").wait_for(timeout=180_000)
            wait_until_idle(p)
            steps = main.get_by_test_id("stSlider").filter(has_text="Steps")
            steps.get_by_role("slider").focus()
            p.keyboard.press("End")  # 1024 steps: a run long enough for the second visitor to arrive during it
            wait_until_idle(p)
        page.get_by_test_id("stMain").get_by_role("button", name="Visualise").click()
        page.get_by_test_id("stMain").get_by_text(re.compile(r"Step \d+ of 1024")).first.wait_for(timeout=120_000)
        theirs = other.get_by_test_id("stMain")
        theirs.get_by_role("button", name="Visualise").click()
        theirs.get_by_text("Another visitor is drawing this same image").first.wait_for(timeout=60_000)
        other.screenshot(path=str(artifacts / "features_waiting.png"))
        assert theirs.get_by_text(re.compile(r"Step \d+ of 1024")).count() == 0  # it does not optimise too
        for p in (page, other):
            p.get_by_test_id("stMain").get_by_text("1024 steps in").nth(1).wait_for(timeout=300_000)
            wait_until_idle(p)
        captions = [p.get_by_test_id("stMain").get_by_text("1024 steps in").all_inner_texts() for p in (page, other)]
        assert captions[0] == captions[1], captions  # the same run: its time and final value, read from the cache
        assert other.get_by_text("Traceback").count() == 0
    finally:
        other.close()
