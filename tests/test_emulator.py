"""The emulator's rules, one test each, driven with raw httpx over httpx.ASGITransport."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import anyio
import httpx
import orjson
import pytest
from emulator_helpers import (
    AUTH,
    BASE,
    SECRET_TOKEN,
    acquire,
    audio_input,
    audio_transcoder,
    av_transcoder,
    body,
    output,
    start_task,
    update_params,
    vendor_body,
    video_input,
)

from layoutsync.emulator import Emulator, EmulatorConfig, ManualClock, create_app

pytestmark = pytest.mark.anyio


class Harness:
    """An in-process emulator with a manual clock and a sleep that only records."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.clock = ManualClock()
        self.slept: list[float] = []

        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)

        self.emulator = Emulator(config or EmulatorConfig(seed=7), clock=self.clock, sleep=sleep)
        self.app = create_app(emulator=self.emulator)

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://emulator",
            headers={"Authorization": AUTH, **headers},
        )


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with harness.client() as c:
        yield c


def assert_error(response: httpx.Response, status: int, *words: str) -> str:
    """An error is JSON {"message": ...} with the status, and the message names ``words``."""
    assert response.status_code == status, response.text
    message = response.json()["message"]
    for word in words:
        assert word in message, message
    return message


# --- authentication and app ids ------------------------------------------------------------


class TestAuth:
    async def test_missing_authorization_is_401(self, harness: Harness) -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=harness.app), base_url="http://emulator"
        ) as anonymous:
            response = await anonymous.post(f"{BASE}/builderTokens", json={"instanceId": "a"})
        assert_error(response, 401, "Authorization")

    async def test_wrong_secret_is_401(self, harness: Harness) -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=harness.app),
            base_url="http://emulator",
            auth=("emulator-key", "wrong"),
        ) as wrong:
            response = await wrong.post(f"{BASE}/builderTokens", json={"instanceId": "a"})
        assert_error(response, 401)

    async def test_credentials_are_compared_decoded(self, harness: Harness) -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=harness.app),
            base_url="http://emulator",
            auth=("emulator-key", "emulator-secret"),
        ) as basic:
            response = await basic.post(f"{BASE}/builderTokens", json={"instanceId": "a"})
        assert response.status_code == 200

    async def test_disabled_and_unknown_app_ids_are_403(self) -> None:
        harness = Harness(EmulatorConfig(app_ids=("on",), disabled_app_ids=("off",)))
        async with harness.client() as client:
            for app_id in ("off", "never-heard-of"):
                response = await client.post(
                    f"/v1/projects/{app_id}/rtsc/cloud-transcoder/builderTokens",
                    json={"instanceId": "a"},
                )
                assert_error(response, 403, app_id)
            ok = await client.post(
                "/v1/projects/on/rtsc/cloud-transcoder/builderTokens", json={"instanceId": "a"}
            )
        assert ok.status_code == 200


# --- request bodies ------------------------------------------------------------------------


class TestBodies:
    async def test_invalid_body_is_400_naming_the_field(self, client: httpx.AsyncClient) -> None:
        token = await acquire(client)
        bad = av_transcoder()
        bad["canvas"]["width"] = 100
        response = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(bad)
        )
        assert_error(response, 400, "/canvas/width", "100 is below the minimum 120")

    async def test_semantic_rule_is_400(self, client: httpx.AsyncClient) -> None:
        token = await acquire(client)
        bad = av_transcoder()
        bad["audioInputs"].append(audio_input(103, channel="elsewhere"))
        response = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(bad)
        )
        assert_error(response, 400, "rtcChannel", "same channel")

    async def test_content_type_with_charset_is_accepted(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{BASE}/builderTokens",
            content=b'{"instanceId": "a"}',
            headers={"Content-Type": "application/json;charset=utf-8"},
        )
        assert response.status_code == 200

    @pytest.mark.parametrize("content_type", [None, "text/plain"])
    async def test_other_content_types_are_400(
        self, client: httpx.AsyncClient, content_type: str | None
    ) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        response = await client.post(
            f"{BASE}/builderTokens", content=b'{"instanceId": "a"}', headers=headers
        )
        assert_error(response, 400, "Content-Type")

    async def test_malformed_json_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{BASE}/builderTokens",
            content=b'{"instanceId": ',
            headers={"Content-Type": "application/json"},
        )
        assert_error(response, 400, "not JSON")

    @pytest.mark.parametrize(
        "name", ["scenario1-audio-video-watermark", "scenario2-audio-only", "scenario3-channel-mix"]
    )
    async def test_vendor_examples_are_accepted(self, client: httpx.AsyncClient, name: str) -> None:
        token = await acquire(client, name.split("-")[0])
        response = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=vendor_body(name)
        )
        assert response.status_code == 200, response.text


# --- Acquire and builder tokens ---------------------------------------------------------------


class TestAcquire:
    async def test_answer_echoes_the_instance_id_string(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        response = await client.post(f"{BASE}/builderTokens", json={"instanceId": "room_1-A"})
        assert response.status_code == 200
        data = response.json()
        assert set(data) == {"tokenName", "createTs", "instanceId"}
        assert data["instanceId"] == "room_1-A"
        assert data["createTs"] == int(harness.clock())
        assert isinstance(data["tokenName"], str) and data["tokenName"]

    async def test_extra_fields_such_as_services_are_accepted(
        self, client: httpx.AsyncClient
    ) -> None:
        extra = {"instanceId": "room-1", **body(av_transcoder())}
        response = await client.post(f"{BASE}/builderTokens", json=extra)
        assert response.status_code == 200

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"instanceId": 12},
            {"instanceId": ""},
            {"instanceId": "a" * 65},
            {"instanceId": "a b"},
        ],
        ids=["missing", "number", "empty", "too-long", "space"],
    )
    async def test_bad_instance_id_is_400(self, client: httpx.AsyncClient, payload: dict) -> None:
        response = await client.post(f"{BASE}/builderTokens", json=payload)
        assert_error(response, 400, "instanceId")

    async def test_token_is_valid_for_5_minutes(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        just_in_time, too_late = await acquire(client, "a"), await acquire(client, "b")
        harness.clock.advance(300)
        ok = await client.post(
            f"{BASE}/tasks", params={"builderToken": just_in_time}, json=body(av_transcoder())
        )
        assert ok.status_code == 200
        harness.clock.advance(1)
        late = await client.post(
            f"{BASE}/tasks", params={"builderToken": too_late}, json=body(av_transcoder())
        )
        assert_error(late, 400, "builderToken", "expired")

    async def test_unknown_or_missing_token_is_400(self, client: httpx.AsyncClient) -> None:
        unknown = await client.post(
            f"{BASE}/tasks", params={"builderToken": "nope"}, json=body(av_transcoder())
        )
        assert_error(unknown, 400, "builderToken")
        missing = await client.post(f"{BASE}/tasks", json=body(av_transcoder()))
        assert_error(missing, 400, "builderToken", "required")

    async def test_tokens_work_encoded_or_not(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        """Tokens contain + / = (standard base64); a client may send them unencoded."""
        token = ""
        for _ in range(200):
            token = await acquire(client, "enc")
            if "+" in token and "=" in token:
                break
        assert "+" in token and "=" in token
        raw = f"builderToken={token}"  # "+" unencoded arrives as a space
        created = await client.post(f"{BASE}/tasks?{raw}", json=body(av_transcoder()))
        assert created.status_code == 200, created.text
        task_id = created.json()["taskId"]
        for query in (raw, f"builderToken={quote(token, safe='')}"):
            response = await client.get(f"{BASE}/tasks/{task_id}?{query}")
            assert response.status_code == 200, response.text


# --- Create ------------------------------------------------------------------------------------


TASK_KEYS = {
    "createTs",
    "eventHandlers",
    "execution",
    "properties",
    "sequenceId",
    "services",
    "status",
    "taskId",
    "variables",
    "workflows",
}
SERVICE_KEYS = {"config", "createTs", "details", "message", "serviceType", "status"}


def assert_task_object(data: dict, task_id: str | None = None) -> None:
    assert set(data) == TASK_KEYS
    assert set(data["services"]["cloudTranscoder"]) == SERVICE_KEYS
    assert data["services"]["cloudTranscoder"]["serviceType"] == "cloudTranscoderV2"
    assert data["execution"] == {"workflows": {}}
    assert isinstance(data["sequenceId"], str)
    assert uuid.UUID(hex=data["taskId"]).hex == data["taskId"]
    if task_id is not None:
        assert data["taskId"] == task_id


class TestCreate:
    async def test_answer_is_the_vendor_task_object(self, client: httpx.AsyncClient) -> None:
        token = await acquire(client)
        response = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
        )
        assert response.status_code == 200
        data = response.json()
        assert_task_object(data)
        assert data["status"] == "STARTED"
        assert data["sequenceId"] == "0"
        assert data["services"]["cloudTranscoder"]["config"] == {}

    async def test_retried_create_returns_the_same_task(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        harness.clock.advance(600)  # a token bound to a live task never expires
        again = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
        )
        assert again.status_code == 200
        assert_task_object(again.json(), task_id)
        assert len(harness.emulator.tasks()) == 1

    @pytest.mark.parametrize("status", [201, 409])
    async def test_retried_create_answer_is_configurable(self, status: int) -> None:
        harness = Harness(EmulatorConfig(retried_create=status))
        async with harness.client() as client:
            token, task_id = await start_task(client)
            again = await client.post(
                f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
            )
        assert again.status_code == status
        if status == 409:
            assert again.json()["taskId"] == task_id
            assert again.json()["message"]
        else:
            assert_task_object(again.json(), task_id)
        assert len(harness.emulator.tasks()) == 1

    async def test_second_live_task_of_an_instance_is_409(self, client: httpx.AsyncClient) -> None:
        first_token, first_task = await start_task(client)
        other = await acquire(client)
        conflict = await client.post(
            f"{BASE}/tasks", params={"builderToken": other}, json=body(av_transcoder())
        )
        assert_error(conflict, 409, "room-1")
        assert "taskId" not in conflict.json()  # not yours to adopt
        await client.delete(f"{BASE}/tasks/{first_task}", params={"builderToken": first_token})
        after = await client.post(
            f"{BASE}/tasks", params={"builderToken": other}, json=body(av_transcoder())
        )
        assert after.status_code == 200

    async def test_a_token_serves_one_task_only(self, client: httpx.AsyncClient) -> None:
        token, task_id = await start_task(client)
        await client.delete(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        reused = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
        )
        assert_error(reused, 400, "builderToken", "already used")

    async def test_echo_config_option(self) -> None:
        harness = Harness(EmulatorConfig(echo_config=True))
        async with harness.client() as client:
            token, task_id = await start_task(client)
            response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        config = response.json()["services"]["cloudTranscoder"]["config"]
        assert config == {"transcoder": av_transcoder()}


# --- Query and Delete ----------------------------------------------------------------------------


class TestQueryDelete:
    async def test_query_returns_the_task_object(self, client: httpx.AsyncClient) -> None:
        token, task_id = await start_task(client)
        response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert response.status_code == 200
        assert_task_object(response.json(), task_id)
        assert response.json()["status"] == "IN_PROGRESS"

    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    async def test_unknown_task_is_404(self, client: httpx.AsyncClient, method: str) -> None:
        token = await acquire(client)
        response = await client.request(
            method,
            f"{BASE}/tasks/{uuid.uuid4().hex}",
            params=update_params(token, 0),
            json=body(av_transcoder()),
        )
        assert_error(response, 404, "not found")

    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    async def test_another_token_is_400(self, client: httpx.AsyncClient, method: str) -> None:
        _, task_id = await start_task(client)
        stranger = await acquire(client)
        response = await client.request(
            method,
            f"{BASE}/tasks/{task_id}",
            params=update_params(stranger, 0),
            json=body(av_transcoder()),
        )
        assert_error(response, 400, "builderToken")
        missing = await client.get(f"{BASE}/tasks/{task_id}")
        assert_error(missing, 400, "builderToken", "required")

    async def test_delete_returns_the_task_then_it_is_gone(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        response = await client.delete(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert response.status_code == 200
        assert_task_object(response.json(), task_id)
        assert response.json()["status"] == "STOPPED"
        gone = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert_error(gone, 404)
        assert harness.emulator.tasks() == []


# --- Update --------------------------------------------------------------------------------------


async def patch(
    client: httpx.AsyncClient, token: str, task_id: str, sequence: int | str, transcoder: dict
) -> httpx.Response:
    return await client.patch(
        f"{BASE}/tasks/{task_id}", params=update_params(token, sequence), json=body(transcoder)
    )


class TestUpdate:
    async def test_applied_update_answers_an_empty_body(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        changed = av_transcoder((101, 102, 103))
        response = await patch(client, token, task_id, 0, changed)
        assert response.status_code == 200
        assert response.content == b""  # the vendor page: 包体为空
        assert response.headers["content-length"] == "0"
        assert "content-type" not in response.headers
        (task,) = harness.emulator.tasks()
        assert task["sequenceId"] == 0 and task["updateCount"] == 1
        assert harness.emulator.live_config(task_id) == changed

    @pytest.mark.parametrize("mask", [None, "services.cloudTranscoder", ""])
    async def test_update_mask_is_required(
        self, client: httpx.AsyncClient, mask: str | None
    ) -> None:
        token, task_id = await start_task(client)
        params = {"builderToken": token, "sequenceId": "0"}
        if mask is not None:
            params["updateMask"] = mask
        response = await client.patch(
            f"{BASE}/tasks/{task_id}", params=params, json=body(av_transcoder())
        )
        assert_error(response, 400, "updateMask")

    @pytest.mark.parametrize("sequence", [None, "-1", "1.5", "x", ""])
    async def test_sequence_id_is_an_integer_at_least_0(
        self, client: httpx.AsyncClient, sequence: str | None
    ) -> None:
        token, task_id = await start_task(client)
        params = update_params(token, 0)
        if sequence is None:
            del params["sequenceId"]
        else:
            params["sequenceId"] = sequence
        response = await client.patch(
            f"{BASE}/tasks/{task_id}", params=params, json=body(av_transcoder())
        )
        assert_error(response, 400, "sequenceId")

    async def test_stale_sequence_is_accepted_but_not_applied(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        newest = av_transcoder((101, 102, 103))
        assert (await patch(client, token, task_id, 5, newest)).status_code == 200
        for stale in (5, 4, 0):
            response = await patch(client, token, task_id, stale, av_transcoder((101,)))
            assert response.status_code == 200
            assert response.content == b""
        (task,) = harness.emulator.tasks()
        assert task["sequenceId"] == 5
        assert task["staleUpdates"] == 3
        assert task["updateCount"] == 1
        assert harness.emulator.live_config(task_id) == newest
        query = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert query.json()["sequenceId"] == "5"

    async def test_invalid_update_body_is_400(self, client: httpx.AsyncClient) -> None:
        token, task_id = await start_task(client)
        bad = av_transcoder()
        bad["videoInputs"][0]["region"]["zOrder"] = 101
        response = await patch(client, token, task_id, 0, bad)
        assert_error(response, 400, "/videoInputs/0/region/zOrder")

    async def test_updatable_changes_are_applied(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client, av_transcoder((101, 102, 103)))
        changed = av_transcoder((103, 101, 104))  # reordered, 102 left, 104 joined
        changed["videoInputs"][0]["region"].update(x=640, y=360, width=640, height=360)
        changed["videoInputs"][1]["rtc"]["rtcToken"] = "renewed"
        changed["audioInputs"] = [audio_input(101), audio_input(105)]
        changed["outputs"][0]["audioOption"] = {"profileType": "AUDIO_PROFILE_MUSIC_STANDARD"}
        changed["outputs"][0]["videoOption"].update(fps=30, bitrate=900, width=960, height=540)
        response = await patch(client, token, task_id, 0, changed)
        assert response.status_code == 200, response.text
        assert harness.emulator.live_config(task_id) == changed

    async def test_new_member_brings_its_own_placeholder(self, client: httpx.AsyncClient) -> None:
        token, task_id = await start_task(client)
        changed = av_transcoder()
        changed["videoInputs"].append(video_input(103, 640, placeholder="someone-else"))
        response = await patch(client, token, task_id, 0, changed)
        assert response.status_code == 200, response.text

    @staticmethod
    def _mutations() -> list[tuple[str, object, str]]:
        def canvas(t: dict) -> None:
            t["canvas"]["color"] = 255

        def watermark(t: dict) -> None:
            t["waterMarks"] = [
                {
                    "imageUrl": "https://cdn.example.com/logo.png",
                    "region": {"x": 0, "y": 0, "width": 120, "height": 120, "zOrder": 50},
                }
            ]

        def idle(t: dict) -> None:
            t["idleTimeout"] = 60

        def output_rtc(t: dict) -> None:
            t["outputs"][0]["rtc"]["rtcUid"] = 9001

        def output_token(t: dict) -> None:
            t["outputs"][0]["rtc"]["rtcToken"] = "another"

        def channel(t: dict) -> None:
            for kind in ("audioInputs", "videoInputs"):
                for item in t[kind]:
                    item["rtc"]["rtcChannel"] = "other"

        def placeholder(t: dict) -> None:
            t["videoInputs"].reverse()  # keyed by uid: reordering is not the change
            t["videoInputs"][0]["placeholderImageUrl"] = "https://cdn.example.com/new.png"

        def outputs_added(t: dict) -> None:
            extra = output()
            extra["rtc"].update(rtcChannel="out2")
            t["outputs"].append(extra)

        def to_audio_only(t: dict) -> None:
            del t["videoInputs"]
            del t["outputs"][0]["videoOption"]

        return [
            ("canvas", canvas, "/canvas"),
            ("waterMarks", watermark, "/waterMarks"),
            ("idleTimeout", idle, "/idleTimeout"),
            ("outputs[].rtc uid", output_rtc, "/outputs/0/rtc"),
            ("outputs[].rtc token", output_token, "/outputs/0/rtc"),
            ("input channel", channel, "/rtcChannel"),
            ("kept placeholder", placeholder, "/videoInputs/0/placeholderImageUrl"),
            ("outputs added", outputs_added, "/outputs"),
            ("scenario", to_audio_only, "/videoInputs"),
        ]

    @pytest.mark.parametrize(
        ("mutate", "pointer"),
        [(m, p) for _, m, p in _mutations.__func__()],
        ids=[name for name, _, _ in _mutations.__func__()],
    )
    async def test_non_updatable_change_is_400_naming_the_path(
        self, client: httpx.AsyncClient, harness: Harness, mutate, pointer: str
    ) -> None:
        token, task_id = await start_task(client)
        changed = av_transcoder()
        mutate(changed)
        response = await patch(client, token, task_id, 0, changed)
        assert_error(response, 400, "/services/cloudTranscoder/config/transcoder", pointer)
        assert harness.emulator.live_config(task_id) == av_transcoder()
        assert SECRET_TOKEN not in response.text

    async def test_audio_only_scenario_cannot_gain_video(self, client: httpx.AsyncClient) -> None:
        token, task_id = await start_task(client, audio_transcoder())
        changed = audio_transcoder()
        changed["outputs"][0]["audioOption"] = {"profileType": "AUDIO_PROFILE_SPEECH_STANDARD"}
        assert (await patch(client, token, task_id, 0, changed)).status_code == 200
        with_video = audio_transcoder(videoInputs=[video_input(101)], outputs=[output()])
        response = await patch(client, token, task_id, 1, with_video)
        assert_error(response, 400, "/videoInputs", "scenario")


# --- idleTimeout and presence --------------------------------------------------------------------


class TestIdle:
    async def test_task_is_destroyed_when_every_host_is_gone_too_long(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)  # idleTimeout 300, hosts 101, 102
        emulator = harness.emulator
        emulator.set_present("live", 101, False)
        harness.clock.advance(100)
        emulator.set_present("live", 102, False)
        harness.clock.advance(300)  # 102 absent exactly idleTimeout: not longer
        alive = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert alive.status_code == 200
        harness.clock.advance(1)
        gone = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert_error(gone, 404)
        assert [e["event"] for e in emulator.events()][-1] == "idle_destroyed"
        # The instanceId is free again.
        await start_task(client)

    async def test_one_present_host_keeps_the_task(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        harness.emulator.set_present("live", 101, False)  # 102 never reported: present
        harness.clock.advance(10_000)
        response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert response.status_code == 200

    async def test_a_host_coming_back_resets_the_countdown(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client, av_transcoder((101,)))
        emulator = harness.emulator
        emulator.set_present("live", 101, False)
        harness.clock.advance(250)
        emulator.set_present("live", 101, True)
        emulator.set_present("live", 101, False)
        harness.clock.advance(250)
        response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert response.status_code == 200

    async def test_whole_channel_mix_counts_every_host_of_the_channel(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        mix = audio_transcoder(audioInputs=[audio_input(0)], idleTimeout=60)
        token, task_id = await start_task(client, mix)
        emulator = harness.emulator
        harness.clock.advance(1000)  # nobody reported in the channel: assumed present
        assert emulator.task(task_id) is not None
        emulator.set_present("live", 7, True)
        emulator.set_present("live", 8, False)
        harness.clock.advance(1000)
        assert emulator.task(task_id) is not None  # 7 is still there
        emulator.set_present("live", 7, False)
        harness.clock.advance(61)
        response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert_error(response, 404)

    async def test_admin_presence_and_clock_routes(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client, av_transcoder((101, 102)))
        assert (await client.delete("/_emulator/channels/live/hosts/101")).status_code == 200
        posted = await client.post("/_emulator/channels/live/hosts", json={"absent": [102]})
        assert posted.json()["hosts"]["102"]["present"] is False
        advanced = await client.post("/_emulator/clock", json={"advance": 301})
        assert advanced.json()["now"] == harness.emulator.now()
        listing = await client.get("/_emulator/tasks")
        assert listing.json()["tasks"] == []
        response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert_error(response, 404)
        back = await client.put("/_emulator/channels/live/hosts/101")
        assert back.json()["hosts"]["101"] == {"present": True, "absentSince": None}

    async def test_clock_set_and_no_going_back(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        target = harness.emulator.now() + 3600
        response = await client.post("/_emulator/clock", json={"set": target})
        assert response.json()["now"] == target
        backwards = await client.post("/_emulator/clock", json={"advance": -1})
        assert_error(backwards, 400, "backwards")
        assert_error(await client.post("/_emulator/clock", json={}), 400)


# --- rate limit ----------------------------------------------------------------------------------


async def test_rate_limit_per_app_id_is_429() -> None:
    harness = Harness(EmulatorConfig(qps=2, app_ids=("a", "b")))
    async with harness.client() as client:

        async def call(app_id: str) -> httpx.Response:
            return await client.post(
                f"/v1/projects/{app_id}/rtsc/cloud-transcoder/builderTokens",
                json={"instanceId": "x"},
            )

        statuses = [(await call("a")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert (await call("b")).status_code == 200  # another app id has its own bucket
        limited = await call("a")
        assert_error(limited, 429)
        assert limited.headers["Retry-After"]
        harness.clock.advance(1)
        assert (await call("a")).status_code == 200


# --- faults --------------------------------------------------------------------------------------


class TestFaults:
    async def test_status_for_the_next_n_calls_of_a_kind(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        harness.emulator.add_fault("acquire", "503", 2)
        first, second = (
            await client.post(f"{BASE}/builderTokens", json={"instanceId": "a"}),
            await client.post(f"{BASE}/builderTokens", json={"instanceId": "a"}),
        )
        assert (first.status_code, second.status_code) == (503, 503)
        assert first.json()["message"]
        await acquire(client)  # the third passes

    async def test_a_fault_leaves_other_kinds_alone(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        harness.emulator.add_fault("delete", "500")
        token, task_id = await start_task(client)
        response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert response.status_code == 200
        failed = await client.delete(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert_error(failed, 500)
        assert harness.emulator.task(task_id) is not None  # nothing was applied

    async def test_commit_then_500_applies_the_create(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        harness.emulator.add_fault("create", "commit-500")
        token = await acquire(client)
        failed = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
        )
        assert_error(failed, 500)
        (task,) = harness.emulator.tasks()
        retried = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
        )
        assert retried.status_code == 200
        assert retried.json()["taskId"] == task["taskId"]

    async def test_commit_then_drop_applies_the_update(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        harness.emulator.add_fault("update", "commit-drop")
        changed = av_transcoder((101, 102, 103))
        with pytest.raises(ConnectionAbortedError):
            await patch(client, token, task_id, 0, changed)
        assert harness.emulator.live_config(task_id) == changed
        retried = await patch(client, token, task_id, 0, changed)  # same sequenceId: stale
        assert retried.status_code == 200
        assert harness.emulator.task(task_id)["staleUpdates"] == 1
        (dropped,) = [r for r in harness.emulator.requests("update") if r["status"] is None]
        assert dropped["fault"] == "commit-drop"

    async def test_drop_applies_nothing(self, client: httpx.AsyncClient, harness: Harness) -> None:
        token, task_id = await start_task(client)
        harness.emulator.add_fault("delete", "drop")
        with pytest.raises(ConnectionAbortedError):
            await client.delete(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert harness.emulator.task(task_id) is not None

    async def test_202_applies_then_answers_accepted(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        harness.emulator.add_fault("create", "202")
        token = await acquire(client)
        response = await client.post(
            f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
        )
        assert response.status_code == 202
        assert_task_object(response.json())
        query = await client.get(
            f"{BASE}/tasks/{response.json()['taskId']}", params={"builderToken": token}
        )
        assert query.status_code == 200

    async def test_delay_sleeps_then_answers(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        harness.emulator.add_fault("acquire", "delay", delay=42)
        await acquire(client)
        assert harness.slept == [42]

    async def test_disconnect_sends_no_byte_and_applies_nothing(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        harness.emulator.add_fault("delete", "disconnect")
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.delete(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert harness.emulator.task(task_id) is not None
        (entry,) = harness.emulator.requests("delete")
        assert (entry["status"], entry["note"], entry["fault"]) == (
            None,
            "disconnected",
            "disconnect",
        )

    async def test_commit_disconnect_applies_then_sends_no_byte(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        harness.emulator.add_fault("update", "commit-disconnect")
        changed = av_transcoder((101, 102, 103))
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await patch(client, token, task_id, 1, changed)
        assert harness.emulator.live_config(task_id) == changed
        (entry,) = harness.emulator.requests("update")
        assert (entry["status"], entry["note"]) == (None, "applied+disconnected")

    @pytest.mark.parametrize("kind", ["acquire", "create", "update", "delete"])
    async def test_late_times_the_client_out_then_applies_the_call(self, kind: str) -> None:
        release = anyio.Event()
        harness = Harness()

        async def gated_sleep(seconds: float) -> None:
            harness.slept.append(seconds)
            await release.wait()

        harness.emulator.sleep = gated_sleep
        async with harness.client() as client:
            token, task_id = await start_task(client) if kind != "create" else ("", "")
            if kind == "create":
                token = await acquire(client)
            harness.emulator.clear_requests()
            harness.emulator.add_fault(kind, "late", delay=7)
            changed = av_transcoder((101, 102, 103))
            with pytest.raises(httpx.ReadTimeout):
                if kind == "acquire":
                    await client.post(f"{BASE}/builderTokens", json={"instanceId": "late"})
                elif kind == "create":
                    await client.post(
                        f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
                    )
                elif kind == "update":
                    await patch(client, token, task_id, 1, changed)
                else:
                    await client.delete(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
            await _settle()
            assert harness.emulator.requests(kind) == []  # not applied before the delay is over
            assert len(harness.emulator.tasks()) == (0 if kind == "create" else 1)
            release.set()
            entry = await _logged(harness, kind)
            assert entry["status"] == 200 and entry["note"].endswith("+late")
            assert harness.slept == [7]
            tasks = harness.emulator.tasks()
            if kind == "create":
                assert len(tasks) == 1 and entry["note"] == "created+late"
            elif kind == "update":
                assert harness.emulator.live_config(task_id) == changed
            elif kind == "delete":
                assert tasks == []

    async def test_a_late_update_overtaken_by_a_newer_one_is_stale(self) -> None:
        release = anyio.Event()
        harness = Harness()

        async def gated_sleep(seconds: float) -> None:
            await release.wait()

        harness.emulator.sleep = gated_sleep
        async with harness.client() as client:
            token, task_id = await start_task(client)
            harness.emulator.add_fault("update", "late")
            with pytest.raises(httpx.ReadTimeout):
                await patch(client, token, task_id, 1, av_transcoder((101,)))
            newer = av_transcoder((101, 102, 103))
            assert (await patch(client, token, task_id, 2, newer)).status_code == 200
            release.set()
            entry = await _logged(harness, "update", note="stale+late")
            assert entry["status"] == 200
        assert harness.emulator.live_config(task_id) == newer
        assert harness.emulator.task(task_id)["staleUpdates"] == 1

    async def test_random_faults_replay_with_the_seed(self) -> None:
        async def run(seed: int) -> list[int]:
            harness = Harness()
            harness.emulator.set_random_faults(0.5, seed=seed, actions=["500", "429", "503"])
            async with harness.client() as client:
                return [
                    (
                        await client.post(f"{BASE}/builderTokens", json={"instanceId": "a"})
                    ).status_code
                    for _ in range(40)
                ]

        first, again, other = await run(3), await run(3), await run(4)
        assert first == again
        assert first != other
        assert {200, 500, 429, 503} >= set(first) and 200 in first and len(set(first)) > 2

    async def test_admin_routes_never_fault(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        added = await client.post("/_emulator/faults", json={"kind": "any", "action": "500"})
        assert added.status_code == 200
        assert added.json()["scheduled"][0]["remaining"] == 1
        assert (await client.get("/_emulator/tasks")).status_code == 200
        assert (await client.get("/_emulator/requests")).status_code == 200
        faulted = await client.post(f"{BASE}/builderTokens", json={"instanceId": "a"})
        assert faulted.status_code == 500

    async def test_admin_fault_api(self, client: httpx.AsyncClient, harness: Harness) -> None:
        bad = await client.post("/_emulator/faults", json={"kind": "create", "action": "418x"})
        assert_error(bad, 400, "418x")
        bad_kind = await client.post("/_emulator/faults", json={"kind": "all", "action": "500"})
        assert_error(bad_kind, 400, "kind")
        plan = await client.post(
            "/_emulator/faults",
            json=[
                {"kind": "update", "action": "commit-503", "count": 3},
                {"random": {"rate": 0.1, "seed": 9, "actions": ["504"], "kinds": ["query"]}},
            ],
        )
        shown = plan.json()
        assert shown["scheduled"] == [
            {"kind": "update", "action": "commit-503", "count": 3, "remaining": 3}
        ]
        assert shown["random"]["seed"] == 9
        cleared = await client.delete("/_emulator/faults")
        assert cleared.json()["scheduled"] == [] and cleared.json()["random"] is None


# --- admin API, logs and secrets -----------------------------------------------------------------


class TestAdmin:
    async def test_every_response_has_a_request_id(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        harness.emulator.add_fault("query", "500")
        responses = [
            await client.get("/no/such/route"),
            await client.put(f"{BASE}/builderTokens"),  # 405
            await client.get(f"{BASE}/tasks/x", params={"builderToken": "t"}),  # 500 fault
            await client.get(f"{BASE}/tasks/x", params={"builderToken": "t"}),  # 404
            await client.post(f"{BASE}/builderTokens", json={}),  # 400
            await client.get("/_emulator/tasks"),
            await client.post("/_emulator/clock", json={"advance": "x"}),
        ]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=harness.app), base_url="http://emulator"
        ) as anonymous:
            responses.append(await anonymous.get(f"{BASE}/tasks/x"))  # 401
        assert [r.status_code for r in responses] == [404, 405, 500, 404, 400, 200, 400, 401]
        for response in responses:
            assert uuid.UUID(response.headers["X-Request-ID"])
            body = response.json()
            assert set(body) == ({"tasks"} if response.status_code == 200 else {"message"})

    async def test_listing_shows_config_with_tokens_masked(self, client: httpx.AsyncClient) -> None:
        token, task_id = await start_task(client)
        await patch(client, token, task_id, 3, av_transcoder((101, 102, 103)))
        listing = await client.get("/_emulator/tasks")
        (task,) = listing.json()["tasks"]
        assert task["taskId"] == task_id
        assert task["instanceId"] == "room-1"
        assert task["sequenceId"] == 3
        assert task["builderToken"] == "***"
        video = task["config"]["transcoder"]["videoInputs"]
        assert [v["rtc"]["rtcUid"] for v in video] == [101, 102, 103]
        assert {v["rtc"]["rtcToken"] for v in video} == {"***"}
        assert token not in listing.text and SECRET_TOKEN not in listing.text
        single = await client.get(f"/_emulator/tasks/{task_id}")
        assert single.json() == task

    async def test_request_log_masks_tokens(self, client: httpx.AsyncClient) -> None:
        token, task_id = await start_task(client)
        response = await patch(client, token, task_id, 0, av_transcoder())
        log = await client.get("/_emulator/requests", params={"kind": "update"})
        (entry,) = log.json()["requests"]
        assert entry["requestId"] == response.headers["X-Request-ID"]
        assert entry["method"] == "PATCH"
        assert entry["path"] == f"{BASE}/tasks/{task_id}"
        assert entry["status"] == 200 and entry["note"] == "applied"
        assert entry["query"] == {
            "builderToken": "***",
            "sequenceId": "0",
            "updateMask": "services.cloudTranscoder.config",
        }
        everything = (await client.get("/_emulator/requests")).text
        everything += (await client.get("/_emulator/events")).text
        assert token not in everything and quote(token, safe="") not in everything
        assert SECRET_TOKEN not in everything

    async def test_request_log_is_bounded(self) -> None:
        harness = Harness(EmulatorConfig(request_log_size=5))
        async with harness.client() as client:
            for _ in range(8):
                await client.get("/nowhere")
        assert len(harness.emulator.requests()) == 5
        assert harness.emulator.stats() == {"unknown": {"404": 8}}

    async def test_reset_forgets_everything(
        self, client: httpx.AsyncClient, harness: Harness
    ) -> None:
        token, task_id = await start_task(client)
        harness.emulator.add_fault("any", "500", 10)
        assert (await client.post("/_emulator/reset")).status_code == 200
        assert harness.emulator.tasks() == [] and harness.emulator.requests() == []
        response = await client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
        assert_error(response, 404)

    async def test_runtime_config(self, client: httpx.AsyncClient) -> None:
        changed = await client.patch("/_emulator/config", json={"retriedCreate": 409, "qps": 50})
        assert changed.json()["retriedCreate"] == 409 and changed.json()["qps"] == 50
        assert "customerSecret" not in changed.text and "emulator-secret" not in changed.text
        bad = await client.patch("/_emulator/config", json={"retriedCreate": 204})
        assert_error(bad, 400, "retried_create")
        unknown = await client.patch("/_emulator/config", json={"customerSecret": "x"})
        assert_error(unknown, 400)

    async def test_json_bodies_are_compact_orjson(self, client: httpx.AsyncClient) -> None:
        response = await client.post(f"{BASE}/builderTokens", json={"instanceId": "a"})
        assert response.headers["content-type"] == "application/json"
        assert orjson.loads(response.content) == response.json()


async def _settle() -> None:
    for _ in range(20):
        await anyio.sleep(0)


async def _logged(harness: Harness, kind: str, note: str = "") -> dict:
    """The request-log entry of a late call of ``kind`` once it is applied (bounded wait)."""
    with anyio.fail_after(5):
        while True:
            entries = [e for e in harness.emulator.requests(kind) if e["note"].endswith("+late")]
            if entries and (not note or entries[-1]["note"] == note):
                return entries[-1]
            await anyio.sleep(0.001)
