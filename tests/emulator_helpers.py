"""Request bodies and raw-httpx helpers shared by the emulator tests (no layoutsync Client)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import httpx

from layoutsync.emulator import DEFAULT_APP_ID, DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET
from layoutsync.validate import wrap_transcoder

VENDOR = Path(__file__).resolve().parent.parent / "examples" / "vendor"
BASE = f"/v1/projects/{DEFAULT_APP_ID}/rtsc/cloud-transcoder"
MASK_UPDATE = "services.cloudTranscoder.config"
AUTH = "Basic " + base64.b64encode(
    f"{DEFAULT_CUSTOMER_KEY}:{DEFAULT_CUSTOMER_SECRET}".encode()
).decode("ascii")
SECRET_TOKEN = "007eJxSECRETTOKENVALUE"  # a fake rtcToken the tests look for


def video_input(uid: int, x: int = 0, *, channel: str = "live", placeholder: str = "p") -> dict:
    return {
        "rtc": {"rtcChannel": channel, "rtcUid": uid, "rtcToken": f"{SECRET_TOKEN}-{uid}"},
        "placeholderImageUrl": f"https://cdn.example.com/{placeholder}.png",
        "region": {"x": x, "y": 0, "width": 320, "height": 180, "zOrder": 1},
    }


def audio_input(uid: int, *, channel: str = "live") -> dict:
    return {"rtc": {"rtcChannel": channel, "rtcUid": uid, "rtcToken": f"{SECRET_TOKEN}-a{uid}"}}


def output(*, video: bool = True) -> dict:
    item: dict[str, Any] = {
        "rtc": {"rtcChannel": "out", "rtcUid": 9000, "rtcToken": f"{SECRET_TOKEN}-out"},
        "audioOption": {"profileType": "AUDIO_PROFILE_DEFAULT"},
    }
    if video:
        item["videoOption"] = {"fps": 15, "codec": "H264", "width": 1280, "height": 720}
    return item


def av_transcoder(uids: tuple[int, ...] = (101, 102), **overrides: Any) -> dict:
    """An audio+video transcoder with one tile per uid on a 1280x720 canvas."""
    transcoder = {
        "idleTimeout": 300,
        "audioInputs": [audio_input(uid) for uid in uids],
        "videoInputs": [video_input(uid, 320 * i) for i, uid in enumerate(uids)],
        "canvas": {"width": 1280, "height": 720, "color": 0},
        "outputs": [output()],
    }
    transcoder.update(overrides)
    return transcoder


def audio_transcoder(uids: tuple[int, ...] = (101, 102), **overrides: Any) -> dict:
    transcoder = {
        "idleTimeout": 180,
        "audioInputs": [audio_input(uid) for uid in uids],
        "canvas": {"width": 960, "height": 480, "color": 0},
        "outputs": [output(video=False)],
    }
    transcoder.update(overrides)
    return transcoder


def body(transcoder: dict) -> dict:
    return wrap_transcoder(copy.deepcopy(transcoder))


def vendor_body(name: str) -> dict:
    document = json.loads((VENDOR / f"{name}.json").read_text(encoding="utf-8"))
    if name.startswith("scenario1"):
        # The published example has a 100x100 watermark, below the documented 120 floor.
        region = document["services"]["cloudTranscoder"]["config"]["transcoder"]["waterMarks"][0]
        region["region"].update(width=120, height=120)
    return document


def update_params(token: str, sequence: int | str) -> dict[str, str]:
    return {"builderToken": token, "sequenceId": str(sequence), "updateMask": MASK_UPDATE}


async def acquire(client: httpx.AsyncClient, instance_id: str = "room-1") -> str:
    response = await client.post(f"{BASE}/builderTokens", json={"instanceId": instance_id})
    assert response.status_code == 200, response.text
    token: str = response.json()["tokenName"]
    return token


async def start_task(
    client: httpx.AsyncClient, transcoder: dict | None = None, instance_id: str = "room-1"
) -> tuple[str, str]:
    """Acquire + Create; returns (builderToken, taskId)."""
    token = await acquire(client, instance_id)
    response = await client.post(
        f"{BASE}/tasks", params={"builderToken": token}, json=body(transcoder or av_transcoder())
    )
    assert response.status_code == 200, response.text
    return token, response.json()["taskId"]
