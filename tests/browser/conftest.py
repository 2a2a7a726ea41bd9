from __future__ import annotations

import os

import pytest

from tests.browser.harness import ROOT, chromium_page, chromium_path, streamlit_server

ARTIFACTS = ROOT / "tests" / "_artifacts"


def _require_browser() -> None:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: chromium is missing (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="session")
def app_url() -> str:
    """The app every browser test of the session drives; when they are done, its server's log must hold no stack
    (an error caught and logged, or a warning Streamlit logs with one: a widget given a default beside a value set
    through the Session State API, which a visitor never sees)."""
    _require_browser()
    with streamlit_server() as url:
        yield url
    log = ARTIFACTS / f"streamlit-{url.rsplit(':', 1)[1]}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    stacks = [line for line in text.splitlines() if "Traceback" in line or "Stack (most recent call last)" in line]
    assert not stacks, f"the app's server logged {len(stacks)} stack(s) during the browser tests; see {log}"


@pytest.fixture()
def page():
    _require_browser()
    with chromium_page() as p:
        p.set_default_timeout(90_000)
        yield p
