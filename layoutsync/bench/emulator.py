"""Updates per second the in-process emulator sustains, so load benchmarks measure layoutsync.

Goal (issue 4): >= 2,000 Updates/s on one core, driven through
``httpx.AsyncClient`` + ``httpx.ASGITransport`` with a realistic 16-host body,
alternating two bodies so every Update changes something (and is applied).
Baseline in the same run: the same client and transport against a trivial ASGI
app that answers ``{}``, i.e. the floor any in-process server costs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import orjson

from ..emulator.state import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    UPDATE_MASK,
    EmulatorConfig,
)
from ..validate import wrap_transcoder
from . import BenchOptions, Figure

__all__ = ["GOAL_UPDATES_PER_SECOND", "run", "sixteen_host_body"]

GOAL_UPDATES_PER_SECOND = 2000.0
_BASE = f"/v1/projects/{DEFAULT_APP_ID}/rtsc/cloud-transcoder"
_FAKE_TOKEN = "007eJxTYBBWs" + "Q" * 100  # the length of a real RTC token


def sixteen_host_body(variant: int = 0) -> dict[str, Any]:
    """A 4x4 grid of 16 hosts with audio, a watermark and video output; ``variant`` swaps the
    first two tiles so two variants differ in updatable fields only."""
    uids = list(range(101, 117))
    if variant % 2:
        uids[0], uids[1] = uids[1], uids[0]
    tile_w, tile_h = 312, 172
    video = [
        {
            "rtc": {"rtcChannel": "bench", "rtcUid": uid, "rtcToken": _FAKE_TOKEN},
            "placeholderImageUrl": "https://cdn.example.com/offline.png",
            "region": {
                "x": 8 + (i % 4) * (tile_w + 8),
                "y": 8 + (i // 4) * (tile_h + 8),
                "width": tile_w,
                "height": tile_h,
                "zOrder": 1,
            },
        }
        for i, uid in enumerate(uids)
    ]
    return wrap_transcoder(
        {
            "idleTimeout": 300,
            "audioInputs": [
                {"rtc": {"rtcChannel": "bench", "rtcUid": uid, "rtcToken": _FAKE_TOKEN}}
                for uid in sorted(uids)
            ],
            "videoInputs": video,
            "canvas": {"width": 1280, "height": 720, "color": 1052688},
            "waterMarks": [
                {
                    "imageUrl": "https://cdn.example.com/logo.png",
                    "region": {"x": 1140, "y": 580, "width": 120, "height": 120, "zOrder": 50},
                }
            ],
            "outputs": [
                {
                    "rtc": {"rtcChannel": "bench-live", "rtcUid": 9000, "rtcToken": _FAKE_TOKEN},
                    "audioOption": {"profileType": "AUDIO_PROFILE_MUSIC_STANDARD"},
                    "videoOption": {
                        "fps": 15,
                        "codec": "H264",
                        "bitrate": 1500,
                        "width": 1280,
                        "height": 720,
                    },
                }
            ],
        }
    )


async def _trivial_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def _updates_per_second(app: Any, task_id: str, token: str, count: int) -> float:
    bodies = [orjson.dumps(sixteen_host_body(v)) for v in (1, 0)]
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://emulator",
        auth=(DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET),
    ) as client:
        url = f"{_BASE}/tasks/{task_id}"

        async def burst(start: int, n: int) -> float:
            began = time.perf_counter()
            for sequence in range(start, start + n):
                params: dict[str, str | int] = {
                    "builderToken": token,
                    "sequenceId": sequence,
                    "updateMask": UPDATE_MASK,
                }
                response = await client.patch(
                    url, params=params, content=bodies[sequence % 2], headers=headers
                )
                if response.status_code != 200:
                    raise RuntimeError(f"Update answered {response.status_code}: {response.text}")
            return n / (time.perf_counter() - began)

        await burst(0, min(200, count))  # warm-up: caches, code paths
        rounds = [await burst(count * (r + 1), count) for r in range(3)]
    return statistics.median(rounds)


async def _measure(count: int) -> tuple[float, float, int, int]:
    from ..emulator.app import create_app

    app = create_app(EmulatorConfig())
    emulator = app.state.emulator
    token = emulator.acquire(DEFAULT_APP_ID, {"instanceId": "bench"}).body["tokenName"]
    created = emulator.create(DEFAULT_APP_ID, token, sixteen_host_body(0))
    task_id = created.body["taskId"]
    emulator_rate = await _updates_per_second(app, task_id, token, count)
    trivial_rate = await _updates_per_second(_trivial_app, task_id, token, count)
    (task,) = emulator.tasks()
    return emulator_rate, trivial_rate, task["updateCount"], task["staleUpdates"]


def run(options: BenchOptions) -> list[Figure]:
    count = 500 if options.quick else 3000
    rate, trivial, applied, stale = asyncio.run(_measure(count))
    if stale:
        raise RuntimeError(f"{stale} Updates were stale; every benchmark Update must apply")
    return [
        Figure(
            bench="emulator",
            name="updates_per_second",
            value=rate,
            unit="updates/s",
            goal=f">= {GOAL_UPDATES_PER_SECOND:,.0f}",
            ok=rate >= GOAL_UPDATES_PER_SECOND,
            machine=True,  # a rate of this machine's core, not a ratio of one run
            details={
                "ratio_to_goal": round(rate / GOAL_UPDATES_PER_SECOND, 2),
                "hosts": 16,
                "applied": applied,
            },
        ),
        Figure(
            bench="emulator",
            name="update_cost_vs_trivial_app",
            value=trivial / rate,
            unit="x",
            details={
                "trivial_app_per_second": round(trivial),
                "emulator_us_per_update": round(1e6 / rate - 1e6 / trivial, 1),
            },
        ),
    ]
