"""The daemon's previews and dashboard page, in process (the browser test is in
test_dashboard_browser.py): the token is needed, the regions are the session's, repeats are
304s, and the page itself holds no data and loads nothing from elsewhere."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from PIL import Image
from test_daemon_app import AUTH, Harness, config_dir, emulator_app, harness

from layoutsync.preview import compile_for_preview

__all__ = ["config_dir", "emulator_app", "harness"]  # fixtures, imported so pytest finds them

pytestmark = pytest.mark.anyio
SVG = "{http://www.w3.org/2000/svg}"


def _regions(svg: bytes) -> list[tuple[int, int, int, int, int]]:
    return [
        (
            int(rect.get("data-uid", "")),
            int(rect.get("x", "")),
            int(rect.get("y", "")),
            int(rect.get("width", "")),
            int(rect.get("height", "")),
        )
        for rect in ET.fromstring(svg).iter(f"{SVG}rect")
        if rect.get("class") == "region"
    ]


@pytest.mark.parametrize("path", ["preview.svg", "preview.png", "preview.svg?live=1"])
async def test_previews_need_the_token(harness: Harness, path: str) -> None:
    response = await harness.api.get(f"/v1/sessions/lobby/{path}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = {"Authorization": "Bearer nope"}
    assert (await harness.api.get(f"/v1/sessions/lobby/{path}", headers=wrong)).status_code == 401


async def test_unknown_session_is_404(harness: Harness) -> None:
    response = await harness.api.get("/v1/sessions/nobody/preview.svg", headers=AUTH)
    assert response.status_code == 404


async def test_desired_and_live_previews_follow_the_session(harness: Harness) -> None:
    await harness.api.put("/v1/sessions/lobby/hosts", json={"hosts": [101, 102]}, headers=AUTH)
    desired = await harness.api.get("/v1/sessions/lobby/preview.svg", headers=AUTH)
    assert desired.status_code == 200
    assert desired.headers["content-type"].startswith("image/svg+xml")
    managed = harness.daemon.get("lobby")
    expected = compile_for_preview(managed.spec, [101, 102])
    assert expected.body is not None
    inputs = expected.body["services"]["cloudTranscoder"]["config"]["transcoder"]["videoInputs"]
    want = [
        (i["rtc"]["rtcUid"], *(i["region"][k] for k in ("x", "y", "width", "height")))
        for i in inputs
    ]
    assert _regions(desired.content) == want

    await harness.settled("lobby")
    live = await harness.api.get("/v1/sessions/lobby/preview.svg?live=1", headers=AUTH)
    assert _regions(live.content) == want
    assert b"lobby \xc2\xb7 live" in live.content

    # The same picture again costs a 304.
    etag = live.headers["etag"]
    again = await harness.api.get(
        "/v1/sessions/lobby/preview.svg?live=1", headers={**AUTH, "If-None-Match": etag}
    )
    assert again.status_code == 304

    # A join changes the desired picture at once and the live one once applied.
    await harness.api.put("/v1/sessions/lobby/hosts/103", headers=AUTH)
    joined = await harness.api.get("/v1/sessions/lobby/preview.svg", headers=AUTH)
    assert [r[0] for r in _regions(joined.content)] == [101, 102, 103]
    await harness.settled("lobby")
    live = await harness.api.get(
        "/v1/sessions/lobby/preview.svg?live=1", headers={**AUTH, "If-None-Match": etag}
    )
    assert live.status_code == 200
    assert [r[0] for r in _regions(live.content)] == [101, 102, 103]

    png = await harness.api.get("/v1/sessions/lobby/preview.png?live=1", headers=AUTH)
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).format == "PNG"


async def test_live_preview_without_a_task(harness: Harness) -> None:
    live = await harness.api.get("/v1/sessions/stage/preview.svg?live=1", headers=AUTH)
    assert live.status_code == 200
    assert _regions(live.content) == []
    assert live.content.count(b"no live task") == 3  # <title>, the heading, the canvas


async def test_the_page_holds_no_data_and_loads_nothing_from_elsewhere(harness: Harness) -> None:
    page = await harness.api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert b"lobby" not in page.content
    assert b"http://" not in page.content and b"https://" not in page.content
    for asset, kind in (
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ):
        response = await harness.api.get(asset)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
        assert b"http://" not in response.content and b"https://" not in response.content
    script = (await harness.api.get("/dashboard/app.js")).content
    assert b"sessionStorage" in script and b"document.cookie" not in script
    assert "set-cookie" not in page.headers
