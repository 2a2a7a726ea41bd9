"""Start the real app with ``streamlit run`` on 127.0.0.1 and drive it in Debian's Chromium through Playwright.

Playwright's own browser download cannot work here, so we launch the system ``chromium`` binary. On a machine
without it the browser tests are skipped, except under CI (``CI=true``) where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Run the app until the block exits; yields its base URL once ``/_stcore/health`` answers."""
    with streamlit_process(env, timeout) as (url, _):
        yield url


@contextmanager
def streamlit_process(env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[tuple[str, int]]:
    """:func:`streamlit_server`, yielding ``(url, pid)`` so a test can read the server's memory."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    log = open(ROOT / "tests" / "_artifacts" / f"streamlit-{port}.log", "wb") if _artifacts_ok() else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode} before it was healthy")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy within {timeout:.0f} s")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not subprocess.DEVNULL:
            log.close()


def _artifacts_ok() -> bool:
    (ROOT / "tests" / "_artifacts").mkdir(parents=True, exist_ok=True)
    return True


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A Playwright page in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def wait_until_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until the script has finished its run, so a screenshot or a read shows the finished page: the app's own
    ``data-test-script-state`` (set as a rerun is asked for, before the server answers) says ``notRunning`` and
    the "running" indicator is gone. A rerun just asked for (a click) may not have shown its indicator yet: give it
    half a second to appear first. (Waiting on the indicator alone once let a read see the run before: CI read a
    share box a moment before the run that changed it had ended.)"""
    try:
        page.wait_for_selector("[data-testid=stStatusWidget]", timeout=500)
    except Exception:  # noqa: BLE001 - nothing started: the page is idle already
        pass
    page.wait_for_function(
        "document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'"
        " && !document.querySelector('[data-testid=stStatusWidget]')",
        timeout=timeout_ms,
    )


def enter_text(page, field, text: str) -> None:
    """Type ``text`` into a Streamlit text or number input (a locator) and commit it as a visitor does (Enter), then
    wait for the rerun it starts."""
    field.fill(text)
    field.press("Enter")
    wait_until_idle(page)
