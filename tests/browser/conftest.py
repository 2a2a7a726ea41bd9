from __future__ import annotations

import os

import pytest

from tests.browser.harness import chromium_page, chromium_path, streamlit_server


def _require_browser() -> None:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: chromium is missing (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="session")
def app_url() -> str:
    _require_browser()
    with streamlit_server() as url:
        yield url


@pytest.fixture()
def page():
    _require_browser()
    with chromium_page() as p:
        p.set_default_timeout(90_000)
        yield p
