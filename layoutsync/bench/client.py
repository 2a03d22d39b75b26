"""Client overhead per call: ``Client``/``AsyncClient`` against raw httpx on the same transport.

Both sides talk to one ``httpx.MockTransport`` that answers with a canned task
object (Query) or an empty 200 (Update), through an httpx client configured
alike (base URL, Basic auth, timeout), so the difference is what layoutsync
adds: building the request in the sans-IO core, the retry state machine,
interpreting the answer into a frozen value, and the response hook/log.

The baseline is raw httpx as one writes it: ``http.request(method, path,
params=..., content=orjson.dumps(body))``, a status check and ``orjson.loads``.
Every Update carries a new sequenceId on both sides, as in real use; a Query
repeats its URL, as a periodic refresh does. ``vs_same_url`` compares with raw
httpx that builds an absolute URL the way the client does, which isolates the
cost of the core itself. Logging runs at ``info`` (as the CLI and the daemon
configure it), so the per-response debug event is filtered out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from ..api.client import AsyncClient, Client
from ..api.protocol import UPDATE_MASK
from . import BenchOptions, Figure, median_seconds, quiet_logs

__all__ = ["run"]

GOAL = 1.2
APP_ID = "bench-app"
TASK_ID = "c0077139e34d0949c719189a393aa7c0"
TOKEN = "nUwUbQf9Zg6tsgtLslGnDg0lk8RYaUE0+/=="
BASE_URL = "https://api.sd-rtn.com"
PATH = f"/v1/projects/{APP_ID}/rtsc/cloud-transcoder/tasks/{TASK_ID}"
JSON_HEADERS = {"Content-Type": "application/json"}
ASYNC_BATCH = 50

_TASK = orjson.dumps(
    {
        "createTs": 1661420011,
        "eventHandlers": {},
        "execution": {"workflows": {}},
        "properties": {},
        "sequenceId": "0",
        "services": {
            "cloudTranscoder": {
                "config": {},
                "createTs": 1661420011,
                "message": "OnSlaveServiceQueryUpdated",
                "serviceType": "cloudTranscoderV2",
                "status": "serviceInProgress",
            }
        },
        "status": "IN_PROGRESS",
        "taskId": TASK_ID,
        "variables": {},
        "workflows": {},
    }
)
_ANSWER_HEADERS = {"Content-Type": "application/json", "X-Request-ID": "bench"}


def _answer(request: httpx.Request) -> httpx.Response:
    content = _TASK if request.method == "GET" else b"{}"
    return httpx.Response(200, content=content, headers=_ANSWER_HEADERS)


def _body(hosts: int = 16) -> dict[str, Any]:
    """A 16-host grid body: the size of a real Update."""
    rtc = {"rtcChannel": "room", "rtcToken": "input-token-for-uid-0"}
    video = [
        {
            "rtc": {**rtc, "rtcUid": 100 + i},
            "placeholderImageUrl": "https://example.com/offline.png",
            "region": {"x": (i % 4) * 320, "y": (i // 4) * 180, "width": 320, "height": 180,
                       "zOrder": 1},
        }
        for i in range(hosts)
    ]  # fmt: skip
    transcoder = {
        "idleTimeout": 300,
        "audioInputs": [{"rtc": {**rtc, "rtcUid": 100 + i}} for i in range(hosts)],
        "videoInputs": video,
        "canvas": {"width": 1280, "height": 720, "color": 0},
        "outputs": [
            {
                "rtc": {"rtcChannel": "room-out", "rtcUid": 9000, "rtcToken": "output-token"},
                "audioOption": {"profileType": "AUDIO_PROFILE_MUSIC_STANDARD"},
                "videoOption": {"fps": 15, "codec": "H264", "width": 1280, "height": 720},
            }
        ],
    }
    return {
        "services": {
            "cloudTranscoder": {
                "serviceType": "cloudTranscoderV2",
                "config": {"transcoder": transcoder},
            }
        }
    }


def _update_query(sequence: int) -> tuple[tuple[str, str], ...]:
    return (("builderToken", TOKEN), ("sequenceId", str(sequence)), ("updateMask", UPDATE_MASK))


def _sync_functions(
    client: Client, raw: httpx.Client, body: dict[str, Any]
) -> dict[str, tuple[Callable[[], object], ...]]:
    sequences = itertools.count()
    prefix = BASE_URL

    def raw_query() -> object:
        response = raw.request("GET", PATH, params=(("builderToken", TOKEN),), headers=JSON_HEADERS)
        if response.status_code != 200:
            raise RuntimeError(response.status_code)
        return orjson.loads(response.content)["taskId"]

    def raw_query_same_url() -> object:
        url = httpx.URL(f"{prefix}{PATH}?{urlencode((('builderToken', TOKEN),))}")
        response = raw.request("GET", url, headers=JSON_HEADERS)
        if response.status_code != 200:
            raise RuntimeError(response.status_code)
        return orjson.loads(response.content)["taskId"]

    def raw_update() -> object:
        response = raw.request(
            "PATCH",
            PATH,
            params=_update_query(next(sequences)),
            content=orjson.dumps(body),
            headers=JSON_HEADERS,
        )
        if response.status_code != 200:
            raise RuntimeError(response.status_code)
        return response

    def raw_update_same_url() -> object:
        url = httpx.URL(f"{prefix}{PATH}?{urlencode(_update_query(next(sequences)))}")
        response = raw.request("PATCH", url, content=orjson.dumps(body), headers=JSON_HEADERS)
        if response.status_code != 200:
            raise RuntimeError(response.status_code)
        return response

    def client_query() -> object:
        return client.query(TASK_ID, TOKEN)

    def client_update() -> object:
        return client.update(TASK_ID, TOKEN, next(sequences), body)

    return {
        "query": (raw_query, client_query, raw_query_same_url),
        "update": (raw_update, client_update, raw_update_same_url),
    }


def _async_functions(
    client: AsyncClient,
    raw: httpx.AsyncClient,
    body: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
) -> dict[str, tuple[Callable[[], object], ...]]:
    sequences = itertools.count()

    async def raw_query() -> None:
        response = await raw.request(
            "GET", PATH, params=(("builderToken", TOKEN),), headers=JSON_HEADERS
        )
        if response.status_code != 200:
            raise RuntimeError(response.status_code)
        orjson.loads(response.content)

    async def raw_update() -> None:
        response = await raw.request(
            "PATCH",
            PATH,
            params=_update_query(next(sequences)),
            content=orjson.dumps(body),
            headers=JSON_HEADERS,
        )
        if response.status_code != 200:
            raise RuntimeError(response.status_code)

    async def client_query() -> None:
        await client.query(TASK_ID, TOKEN)

    async def client_update() -> None:
        await client.update(TASK_ID, TOKEN, next(sequences), body)

    def batch(call: Callable[[], Awaitable[None]]) -> Callable[[], object]:
        async def many() -> None:
            for _ in range(ASYNC_BATCH):
                await call()

        return lambda: loop.run_until_complete(many())

    return {
        "query": (batch(raw_query), batch(client_query)),
        "update": (batch(raw_update), batch(client_update)),
    }


def _compare(
    functions: tuple[Callable[[], object], ...], *, budget: float, rounds: int
) -> tuple[list[float], float]:
    """Median seconds per call of each function, and the median of the per-round ratios of
    the second to the first. Rounds interleave the functions, so drift on a shared machine
    hits them alike."""
    inner = []
    for fn in functions:
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        inner.append(max(1, int(budget / rounds / once)))
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for index, fn in enumerate(functions):
            samples[index].append(median_seconds(fn, rounds=1, inner=inner[index]))
    ratios = [ours / raw for raw, ours in zip(samples[0], samples[1], strict=True)]
    return [statistics.median(s) for s in samples], statistics.median(ratios)


def _figure(
    name: str, raw: float, ours: float, ratio: float, same_url: float | None = None
) -> Figure:
    details: dict[str, float | int | str] = {
        "raw_httpx_us": round(raw * 1e6, 1),
        "client_us": round(ours * 1e6, 1),
        "transport": "MockTransport",
    }
    if same_url is not None:
        details["vs_same_url"] = round(ours / same_url, 3)
    return Figure(
        bench="client",
        name=name,
        value=ratio,
        unit="x raw httpx",
        goal=f"<= {GOAL}",
        ok=ratio <= GOAL,
        details=details,
    )


def run(options: BenchOptions) -> list[Figure]:
    rounds = 5 if options.quick else 15
    budget = 0.05 if options.quick else 0.3
    body = _body()
    settings: dict[str, Any] = {
        "base_url": BASE_URL,
        "app_id": APP_ID,
        "customer_key": "bench-key",
        "customer_secret": "bench-secret",
    }
    figures: list[Figure] = []
    with quiet_logs(logging.INFO):
        transport = httpx.MockTransport(_answer)
        with Client(transport=transport, **settings) as client:
            raw = httpx.Client(
                base_url=BASE_URL,
                headers=client._default_headers,
                timeout=client.timeout,
                transport=transport,
            )
            with raw:
                functions = _sync_functions(client, raw, body)
                for call in ("query", "update"):
                    (raw_s, client_s, same_s), ratio = _compare(
                        functions[call], budget=budget, rounds=rounds
                    )
                    figures.append(_figure(f"{call}_overhead", raw_s, client_s, ratio, same_s))
        figures.extend(_run_async(settings, body, budget=budget, rounds=rounds))
    return figures


def _run_async(
    settings: dict[str, Any], body: dict[str, Any], *, budget: float, rounds: int
) -> list[Figure]:
    loop = asyncio.new_event_loop()
    transport = httpx.MockTransport(_answer)
    client = AsyncClient(transport=transport, **settings)
    raw = httpx.AsyncClient(
        base_url=BASE_URL,
        headers=client._default_headers,
        timeout=client.timeout,
        transport=transport,
    )
    figures = []
    try:
        functions = _async_functions(client, raw, body, loop)
        for call in ("query", "update"):
            (raw_s, client_s), ratio = _compare(functions[call], budget=budget, rounds=rounds)
            figures.append(
                _figure(
                    f"async_{call}_overhead", raw_s / ASYNC_BATCH, client_s / ASYNC_BATCH, ratio
                )
            )
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(raw.aclose())
        loop.close()
    return figures
