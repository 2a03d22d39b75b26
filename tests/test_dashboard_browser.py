"""The dashboard in a real headless Chromium, against ``layoutsync emulator`` and ``daemon``
as real processes: every session's name and live preview appear, and a join sent through
the API shows on the page within a couple of seconds, without a reload.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the dev
extra); skipped with the reason when one is missing. ``.ci/run`` installs both.
Set ``LAYOUTSYNC_DASHBOARD_SCREENSHOT=FILE.png`` to keep a screenshot of the page.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_daemon_e2e import API_TOKEN, AUTH, World, spec_doc, wait_until, world

pytestmark = pytest.mark.e2e

__all__ = ["world"]  # the fixture, imported so pytest finds it here

CHROMIUM = os.environ.get("LAYOUTSYNC_CHROMIUM") or shutil.which("chromium") or ""
CHROMEDRIVER = os.environ.get("LAYOUTSYNC_CHROMEDRIVER") or shutil.which("chromedriver") or ""


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not CHROMIUM:
        return "no chromium binary on PATH (Debian: apt-get install chromium)"
    if not CHROMEDRIVER:
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver)"
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="layoutsync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _put(url: str, path: str, body: dict[str, Any] | None = None) -> None:
    response = httpx.put(f"{url}{path}", json=body, headers=AUTH, timeout=5)
    assert response.status_code == 202, response.text


def _cards(driver: Any) -> dict[str, dict[str, str]]:
    """What the page shows per session: its fields, and the preview's state."""
    found: dict[str, dict[str, str]] = driver.execute_script(
        """
        const out = {};
        for (const card of document.querySelectorAll('.session')) {
          const fields = {};
          for (const dd of card.querySelectorAll('dd')) fields[dd.dataset.field] = dd.textContent;
          const img = card.querySelector('.preview img');
          fields['preview.src'] = img.getAttribute('src') || '';
          fields['preview.loaded'] = String(img.complete && img.naturalWidth > 0);
          fields['preview.signature'] = img.dataset.signature || '';
          out[card.dataset.session] = fields;
        }
        return out;
        """
    )
    return found


def test_dashboard_lists_sessions_with_previews_and_follows_a_join(
    world: World, browser: Any
) -> None:
    (world.specs / "stage.json").write_text(
        json.dumps(spec_doc("stage-1", "stage", layout={"template": "speaker"}))
    )
    daemon = world.start_daemon()
    _put(daemon.url, "/v1/sessions/hall/hosts", {"hosts": [101, 102]})
    _put(daemon.url, "/v1/sessions/stage/hosts", {"hosts": [201, 202, 203]})

    # Without the token the page asks for it and shows no session.
    browser.get(f"{daemon.url}/")
    wait_until(lambda: browser.find_element("id", "login").is_displayed(), what="login form")
    assert _cards(browser) == {}

    # The token in the fragment signs in, and leaves the address bar at once.
    browser.get(f"{daemon.url}/#token={API_TOKEN}")
    wait_until(lambda: set(_cards(browser)) == {"hall", "stage"}, what="both sessions listed")
    assert "token" not in browser.current_url
    assert browser.execute_script("return document.cookie") == ""

    def shows(name: str, visible: str) -> dict[str, str] | None:
        card = _cards(browser).get(name, {})
        ok = card.get("visible") == visible and card.get("preview.loaded") == "true"
        return card if ok and card.get("taskId", "-") != "-" else None

    hall = wait_until(lambda: shows("hall", "101, 102"), what="hall's live preview")
    wait_until(lambda: shows("stage", "201, 202, 203"), what="stage's live preview")
    assert hall["preview.src"].startswith("blob:")
    assert hall["hosts"] == "2 visible / 0 overflowed"

    # A join through the API shows without a reload.
    before = hall["preview.signature"]
    sent = time.monotonic()
    _put(daemon.url, "/v1/sessions/hall/hosts/103")
    joined = wait_until(lambda: shows("hall", "101, 102, 103"), timeout=10, what="the join")
    wait_until(
        lambda: _cards(browser)["hall"]["preview.signature"] != before,
        what="hall's preview redrawn",
    )
    # Reported, not asserted (the debounce is 0.5 s here; the page polls every second).
    print(f"join to redrawn preview: {time.monotonic() - sent:.2f} s")
    assert joined["sequenceId"] != "-"

    screenshot = os.environ.get("LAYOUTSYNC_DASHBOARD_SCREENSHOT")
    if screenshot:
        Path(screenshot).write_bytes(browser.get_screenshot_as_png())

    # The previews the page shows need the token like the rest of the API.
    assert httpx.get(f"{daemon.url}/v1/sessions/hall/preview.svg", timeout=5).status_code == 401
