"""The planner: noop fast path, update vs replace classification, create/delete, rendering."""

from __future__ import annotations

import copy
import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layoutsync import plan as plan_module
from layoutsync.canonical import canonical_hash
from layoutsync.emulator.rules import update_violations
from layoutsync.plan import Live, Plan, Region, make_plan, normalise, updatable
from layoutsync.validate import check_request, wrap_transcoder

IN_TOKEN = "in-token-SECRET-1234"
OUT_TOKEN = "out-token-SECRET-5678"
PLACEHOLDER = "https://cdn.example.com/offline.png"


def body(
    video: dict[int, tuple[int, int, int, int, int]] | None = None,
    audio: list[int] | None = None,
    *,
    channel: str = "room",
    token: str = IN_TOKEN,
    tokens: dict[int, str] | None = None,
    color: int = 0,
    idle: int = 300,
    placeholder: str = PLACEHOLDER,
    watermarks: tuple[str, ...] = (),
    profile: str | None = None,
    video_option: bool = True,
    bitrate: int = 800,
    out_token: str = OUT_TOKEN,
) -> dict[str, Any]:
    """A valid request body: ``video`` maps uid -> (x, y, w, h, z) on a 1280x720 canvas."""
    tokens = tokens or {}

    def rtc(uid: int) -> dict[str, Any]:
        return {"rtcChannel": channel, "rtcUid": uid, "rtcToken": tokens.get(uid, token)}

    transcoder: dict[str, Any] = {
        "idleTimeout": idle,
        "canvas": {"width": 1280, "height": 720, "color": color},
    }
    if audio is not None:
        transcoder["audioInputs"] = [{"rtc": rtc(uid)} for uid in audio]
    if video is not None:
        transcoder["videoInputs"] = [
            {
                "rtc": rtc(uid),
                "region": {"x": x, "y": y, "width": w, "height": h, "zOrder": z},
                "placeholderImageUrl": placeholder,
            }
            for uid, (x, y, w, h, z) in video.items()
        ]
    if watermarks:
        transcoder["waterMarks"] = [
            {"imageUrl": url, "region": {"x": 0, "y": 0, "width": 120, "height": 120, "zOrder": 50}}
            for url in watermarks
        ]
    output: dict[str, Any] = {"rtc": {"rtcChannel": "live", "rtcUid": 9000, "rtcToken": out_token}}
    if profile:
        output["audioOption"] = {"profileType": profile}
    if video_option:
        output["videoOption"] = {
            "codec": "H264",
            "width": 1280,
            "height": 720,
            "fps": 15,
            "bitrate": bitrate,
        }
    transcoder["outputs"] = [output]
    result = wrap_transcoder(transcoder)
    assert check_request(result) == (), check_request(result)
    return result


TWO = {101: (0, 0, 640, 360, 0), 102: (640, 0, 640, 360, 0)}
THREE = {**TWO, 103: (0, 360, 640, 360, 0)}


def live_of(
    b: dict[str, Any] | None, *, task: str | None = "task-1", seq: int | None = None
) -> Live:
    return Live(
        task_id=task,
        body=b,
        body_hash=canonical_hash(b) if b is not None else None,
        sequence_id=seq,
        instance_id="demo",
    )


def plan_for(new: dict[str, Any] | None, live: Live, **kwargs: Any) -> Plan:
    return make_plan(
        new, canonical_hash(new) if new is not None else None, live, instance_id="demo", **kwargs
    )


class TestNormalise:
    """Lists become maps keyed by identity, so a host leaving is one removal."""

    def test_inputs_keyed_by_uid(self) -> None:
        tree = normalise(body(TWO, audio=[101, 102]))
        assert set(tree["videoInputs"]) == {101, 102}
        assert set(tree["audioInputs"]) == {101, 102}
        assert set(tree["outputs"]) == {"live:9000"}
        assert tree["inputChannel"] == "room"
        assert tree["scenario"] == "audio+video"

    def test_audio_only_scenario(self) -> None:
        tree = normalise(body(None, audio=[101], video_option=False))
        assert tree["scenario"] == "audio-only"
        assert "videoInputs" not in tree

    def test_repeated_watermark_gets_its_own_key(self) -> None:
        url = "https://cdn.example.com/logo.png"
        tree = normalise(body(TWO, watermarks=(url, url)))
        assert list(tree["waterMarks"]) == [url, f"{url}#2"]

    def test_first_host_leaving_is_one_removal(self) -> None:
        old = body(THREE, audio=[101, 102, 103])
        new = body({k: v for k, v in THREE.items() if k != 101}, audio=[102, 103])
        plan = plan_for(new, live_of(old))
        assert plan.action == "update"
        assert {c.path for c in plan.changes} == {("audioInputs", 101), ("videoInputs", 101)}
        assert all(c.op == "remove" for c in plan.changes)
        assert [(h.uid, h.kind) for h in plan.hosts] == [(101, "removed")]


class TestFastPath:
    """Equal canonical hashes: noop without DeepDiff and without a schema pass."""

    def test_equal_hash_is_noop_without_diff_or_validation(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def forbidden(*args: object, **kwargs: object) -> None:
            raise AssertionError("must not be called on the fast path")

        b = body(TWO)
        monkeypatch.setattr(plan_module, "DeepDiff", forbidden)
        monkeypatch.setattr(plan_module, "normalise", forbidden)
        monkeypatch.setattr("layoutsync.validate.check_request", forbidden)
        plan = plan_for(copy.deepcopy(b), live_of(b, seq=4))
        assert plan.action == "noop"
        assert plan.calls == ()
        assert plan.next_sequence_id is None
        assert not plan.changed

    def test_key_order_does_not_matter(self) -> None:
        b = body(TWO)
        reordered = json.loads(json.dumps(b, sort_keys=True))
        assert plan_for(reordered, live_of(b)).action == "noop"

    def test_uncertain_update_is_resent_even_when_equal(self) -> None:
        b = body(TWO)
        live = Live("task-1", b, canonical_hash(b), sequence_id=6, uncertain=True)
        plan = plan_for(b, live)
        assert plan.action == "update"
        assert plan.next_sequence_id == 7
        assert "unknown" in plan.reasons[0]

    def test_list_order_only_is_one_update(self) -> None:
        old = body(TWO)
        new = copy.deepcopy(old)
        inputs = new["services"]["cloudTranscoder"]["config"]["transcoder"]["videoInputs"]
        inputs.reverse()
        plan = plan_for(new, live_of(old))
        assert plan.action == "update"
        assert plan.changes == ()


class TestUpdate:
    """Only updatable paths changed: one Update, the next sequenceId."""

    def test_host_joins(self) -> None:
        plan = plan_for(body(THREE), live_of(body(TWO)))
        assert plan.action == "update"
        assert plan.calls == ("update",)
        assert plan.next_sequence_id == 0  # no Update sent yet to this task: start at 0
        assert [(h.uid, h.kind, h.new) for h in plan.hosts] == [
            (103, "added", Region(0, 360, 640, 360, 0))
        ]
        assert plan.replace_paths == ()

    def test_sequence_continues_from_last_sent(self) -> None:
        plan = plan_for(body(THREE), live_of(body(TWO), seq=11))
        assert plan.next_sequence_id == 12

    def test_moved_resized_restacked(self) -> None:
        old = body({101: (0, 0, 640, 360, 0), 102: (640, 0, 640, 360, 0)})
        new = body({101: (0, 0, 1280, 720, 0), 102: (640, 360, 640, 360, 1)})
        plan = plan_for(new, live_of(old))
        assert plan.action == "update"
        kinds = {h.uid: h.kind for h in plan.hosts}
        assert kinds == {101: "resized", 102: "moved+restacked"}
        change = next(h for h in plan.hosts if h.uid == 101)
        assert (change.old, change.new) == (
            Region(0, 0, 640, 360, 0),
            Region(0, 0, 1280, 720, 0),
        )

    def test_overflow_to_audio_only_is_hidden(self) -> None:
        old = body(TWO, audio=[101, 102])
        new = body({101: (0, 0, 1280, 720, 0)}, audio=[101, 102])
        plan = plan_for(new, live_of(old))
        assert plan.action == "update"
        assert {(h.uid, h.kind) for h in plan.hosts} == {(101, "resized"), (102, "hidden")}

    def test_member_token_change_is_updatable_and_redacted(self) -> None:
        old = body(TWO, audio=[101, 102])
        new = body(TWO, audio=[101, 102], tokens={101: "rotated-SECRET-token"})
        plan = plan_for(new, live_of(old))
        assert plan.action == "update"
        token_changes = [c for c in plan.changes if c.path[-1] == "rtcToken"]
        assert {c.path[0] for c in token_changes} == {"audioInputs", "videoInputs"}
        assert all(c.old == "***" and c.new == "***" for c in token_changes)
        assert "SECRET" not in plan.render() + json.dumps(plan.as_dict())

    def test_output_options_are_updatable(self) -> None:
        old = body(TWO, profile="AUDIO_PROFILE_DEFAULT", bitrate=800)
        new = body(TWO, profile="AUDIO_PROFILE_MUSIC_STANDARD", bitrate=1200)
        plan = plan_for(new, live_of(old))
        assert plan.action == "update"
        assert {c.path[2] for c in plan.changes} == {"audioOption", "videoOption"}

    def test_audio_inputs_appearing_is_a_member_change(self) -> None:
        plan = plan_for(body(TWO, audio=[101, 102, 103]), live_of(body(TWO)))
        assert plan.action == "update"
        assert [(h.uid, h.kind) for h in plan.hosts] == [(103, "added")]

    def test_new_member_brings_its_own_placeholder(self) -> None:
        old = body(TWO)
        new = body(THREE)
        transcoder = new["services"]["cloudTranscoder"]["config"]["transcoder"]
        transcoder["videoInputs"][2]["placeholderImageUrl"] = "https://cdn.example.com/b.jpg"
        assert plan_for(new, live_of(old)).action == "update"


class TestReplace:
    """Any other path forces Delete + Create, naming the paths."""

    @pytest.mark.parametrize(
        ("new", "path"),
        [
            (body(TWO, color=255), "canvas/color"),
            (body(TWO, idle=60), "idleTimeout"),
            (body(TWO, watermarks=("https://cdn.example.com/logo.png",)), "waterMarks"),
            (body(TWO, out_token="rotated-out"), "outputs/live:9000/rtc/rtcToken"),
            (
                body(TWO, placeholder="https://cdn.example.com/other.jpg"),
                "videoInputs/101/placeholderImageUrl",
            ),
            (body(TWO, channel="other"), "inputChannel"),
            (body(None, audio=[101, 102], video_option=False), "scenario"),
        ],
    )
    def test_non_updatable(self, new: dict[str, Any], path: str) -> None:
        plan = plan_for(new, live_of(body(TWO), seq=3))
        assert plan.action == "replace"
        assert plan.calls == ("delete", "acquire", "create")
        assert path in plan.replace_paths
        assert plan.next_sequence_id is None
        assert "forces replacement" in plan.render()

    def test_channel_change_with_every_host_replaced(self) -> None:
        """No kept member carries the channel change: the synthetic inputChannel key does."""
        old = body(TWO)
        new = body({201: (0, 0, 640, 360, 0)}, channel="elsewhere")
        plan = plan_for(new, live_of(old))
        assert plan.action == "replace"
        assert plan.replace_paths == ("inputChannel",)

    def test_instance_id_change(self) -> None:
        b = body(TWO)
        live = Live("task-1", b, canonical_hash(b), instance_id="old-name")
        plan = plan_for(b, live)
        assert plan.action == "replace"
        assert plan.replace_paths == ("instanceId",)


class TestCreateAndEmpty:
    def test_no_task_and_hosts_creates(self) -> None:
        plan = plan_for(body(TWO), Live())
        assert plan.action == "create"
        assert plan.calls == ("acquire", "create")
        assert [(h.uid, h.kind) for h in plan.hosts] == [(101, "added"), (102, "added")]
        assert plan.body is not None and plan.body_hash == canonical_hash(plan.body)

    def test_no_task_and_no_host_is_noop(self) -> None:
        assert plan_for(None, Live()).action == "noop"

    def test_on_empty_idle_sends_nothing(self) -> None:
        plan = plan_for(None, live_of(body(TWO)))
        assert plan.action == "noop"
        assert "idleTimeout" in plan.reasons[0]

    def test_on_empty_delete(self) -> None:
        plan = plan_for(None, live_of(body(TWO)), on_empty="delete")
        assert plan.action == "delete"
        assert plan.calls == ("delete",)
        assert {(h.uid, h.kind) for h in plan.hosts} == {(101, "removed"), (102, "removed")}

    def test_unknown_live_config_is_a_full_update(self) -> None:
        plan = plan_for(body(TWO), Live("task-1", None, None, sequence_id=2))
        assert plan.action == "update"
        assert plan.next_sequence_id == 3


class TestRendering:
    """Terraform-like text and JSON: tokens never shown."""

    def test_update_text(self) -> None:
        old = body(THREE)
        new = body(
            {101: (0, 0, 1280, 360, 0), 102: (640, 360, 640, 360, 0), 104: (0, 360, 640, 360, 0)}
        )
        text = plan_for(new, live_of(old, seq=2)).render()
        assert "will be updated in place (Update, sequenceId 3)" in text
        assert "+ host 104: video 640x360 at (0,360) z=0" in text
        assert "- host 103: video 640x360 at (0,360) z=0" in text
        assert "~ host 101: resized: 640x360 at (0,0) z=0 -> 1280x360 at (0,0) z=0" in text
        assert text.rstrip().endswith(".")
        assert IN_TOKEN not in text and OUT_TOKEN not in text

    def test_replace_text_marks_forcing_lines(self) -> None:
        text = plan_for(body(TWO, color=255), live_of(body(TWO))).render()
        assert "~ canvas/color: 0 -> 255  # forces replacement" in text
        assert "must be replaced" in text

    def test_create_text_and_json_redacted(self) -> None:
        plan = plan_for(body(TWO, audio=[101, 102]), Live())
        text = plan.render()
        assert "+ host 101: video 640x360 at (0,0) z=0 + audio" in text
        dumped = json.dumps(plan.as_dict())
        for secret in (IN_TOKEN, OUT_TOKEN):
            assert secret not in text
            assert secret not in dumped
            assert secret not in repr(plan)
        assert '"***"' in dumped

    def test_json_shape(self) -> None:
        data = plan_for(body(THREE), live_of(body(TWO), seq=0)).as_dict()
        assert data["action"] == "update"
        assert data["next_sequence_id"] == 1
        assert data["calls"] == ["update"]
        assert data["hosts"] == [
            {
                "uid": 103,
                "kind": "added",
                "old": None,
                "new": {"x": 0, "y": 360, "width": 640, "height": 360, "zOrder": 0},
                "audio": [False, True],
            }
        ]
        assert data["changes"][0]["path"] == "videoInputs/103"
        assert data["changes"][0]["forces_replacement"] is False

    def test_noop_text_and_summary(self) -> None:
        b = body(TWO)
        plan = plan_for(b, live_of(b))
        assert plan.render().startswith("No changes.")
        assert plan.summary() == "no changes"

    def test_summary_counts_hosts(self) -> None:
        summary = plan_for(body(THREE), live_of(body(TWO), seq=0)).summary()
        assert summary == "update (sequenceId 1): 1 host added"


# --- cross-check against the emulator's independent rules ---------------------------------------

_region = st.tuples(
    st.integers(0, 20).map(lambda n: n * 32),
    st.integers(0, 10).map(lambda n: n * 32),
    st.sampled_from([120, 320, 640]),
    st.sampled_from([120, 180, 360]),
    st.integers(0, 3),
)
_hosts = st.dictionaries(st.integers(1, 12), _region, min_size=1, max_size=6)


@st.composite
def _variant(draw: st.DrawFn) -> dict[str, Any]:
    video = draw(_hosts)
    audio = draw(st.one_of(st.none(), st.lists(st.integers(1, 12), unique=True, max_size=6)))
    return body(
        video,
        audio=audio,
        color=draw(st.sampled_from([0, 0, 0, 255])),
        idle=draw(st.sampled_from([300, 300, 300, 60])),
        placeholder=draw(st.sampled_from([PLACEHOLDER] * 3 + ["https://cdn.example.com/p.jpg"])),
        tokens=draw(st.dictionaries(st.integers(1, 12), st.sampled_from(["t1", "t2"]), max_size=3)),
        profile=draw(st.sampled_from([None, "AUDIO_PROFILE_DEFAULT"])),
        bitrate=draw(st.sampled_from([800, 800, 1500])),
        out_token=draw(st.sampled_from([OUT_TOKEN] * 3 + ["other"])),
    )


class TestAgreesWithEmulatorRules:
    """The planner's update/replace verdict equals the emulator's own Update rules."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_variant(), _variant())
    def test_update_iff_emulator_accepts(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        plan = plan_for(new, live_of(old))
        transcoder = "services", "cloudTranscoder", "config", "transcoder"
        o, n = old, new
        for key in transcoder:
            o, n = o[key], n[key]
        violations = update_violations(o, n)
        if plan.action == "noop":
            assert not violations
        else:
            assert (plan.action == "update") == (not violations), (plan.replace_paths, violations)

    @settings(max_examples=100, deadline=None)
    @given(_hosts, _hosts)
    def test_host_changes_are_the_set_difference(
        self, old: dict[int, Any], new: dict[int, Any]
    ) -> None:
        plan = plan_for(body(new), live_of(body(old)))
        kinds = {h.uid: h.kind for h in plan.hosts}
        assert {u for u, k in kinds.items() if k == "added"} == new.keys() - old.keys()
        assert {u for u, k in kinds.items() if k == "removed"} == old.keys() - new.keys()
        moved = {u for u in old.keys() & new.keys() if old[u] != new[u]}
        assert {u for u, k in kinds.items() if k not in ("added", "removed")} == moved
        assert plan.action == ("noop" if old == new else "update")


def test_updatable_table() -> None:
    assert updatable(("videoInputs", 5))
    assert updatable(("videoInputs", 5, "region", "x"))
    assert updatable(("audioInputs",))
    assert updatable(("audioInputs", 5, "rtc", "rtcToken"))
    assert updatable(("outputs", "live:1", "videoOption", "fps"))
    assert updatable(("outputs", "live:1", "audioOption"))
    assert not updatable(("videoInputs",))
    assert not updatable(("videoInputs", 5, "rtc", "rtcChannel"))
    assert not updatable(("videoInputs", 5, "placeholderImageUrl"))
    assert not updatable(("outputs", "live:1", "videoOption"))
    assert not updatable(("outputs", "live:1", "rtc", "rtcToken"))
    assert not updatable(("canvas", "color"))
    assert not updatable(("scenario",))
    assert not updatable(("inputChannel",))


# --- the plain-dict fast path gives DeepDiff's plan ---------------------------------------------

_TRANSCODER = ("services", "cloudTranscoder", "config", "transcoder")


def _transcoder_of(b: dict[str, Any]) -> dict[str, Any]:
    for key in _TRANSCODER:
        b = b[key]
    return b


def _deepdiff_only(new: dict[str, Any] | None, live: Live) -> Plan:
    """The plan with the fast path turned off: DeepDiff lists every change."""
    with mock.patch.object(plan_module, "_plain_changes", return_value=None):
        return plan_for(new, live)


def _plain_or_none(old: dict[str, Any], new: dict[str, Any]) -> list[Any] | None:
    pruned = plan_module._prune(normalise(old), normalise(new))
    return plan_module._plain_changes(*pruned)


_ODD_VALUES = st.one_of(
    st.integers(-3, 3),
    st.text("ab_", max_size=3),
    st.none(),
    st.booleans(),
    st.floats(0, 2),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from("pq"), st.integers(0, 2)),
)


@st.composite
def _edited(draw: st.DrawFn, old: dict[str, Any]) -> dict[str, Any]:
    """``old`` with a few edits of the kinds the fast path sees, and some it must hand over."""
    new = copy.deepcopy(old)
    t = _transcoder_of(new)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(_EDITS_WEIGHTED))
        video, audio, out = t.get("videoInputs", []), t.get("audioInputs", []), t["outputs"][0]
        member = draw(st.sampled_from(video + audio)) if video + audio else None
        if kind == "join":
            uid = draw(st.integers(13, 20))
            rtc = {"rtcChannel": "room", "rtcUid": uid, "rtcToken": IN_TOKEN}
            region = dict(zip(("x", "y", "width", "height", "zOrder"), draw(_region), strict=True))
            t.setdefault("videoInputs", []).append(
                {"rtc": rtc, "region": region, "placeholderImageUrl": PLACEHOLDER}
            )
            if draw(st.booleans()):
                t.setdefault("audioInputs", []).append({"rtc": dict(rtc)})
        elif kind == "leave" and member is not None:
            for key in ("videoInputs", "audioInputs"):
                if member in t.get(key, []):
                    t[key].remove(member)
        elif kind == "move" and video:
            item = draw(st.sampled_from(video))
            for key in draw(st.lists(st.sampled_from(["x", "y", "width", "zOrder"]), min_size=1)):
                item["region"][key] = draw(
                    st.one_of(
                        st.integers(0, 700), st.sampled_from(["8", 8.0, True, False, None, 0, 1])
                    )
                )
        elif kind == "member" and member is not None:
            key = draw(st.sampled_from(["rtcToken", "rtcChannel", "rtcUid"]))
            odd = [3, 3.0, False] if key == "rtcUid" else ["t9", "other", 3, None]
            member["rtc"][key] = draw(st.sampled_from(odd))
        elif kind == "member-key" and member is not None:
            key = draw(st.sampled_from(["placeholderImageUrl", "renderMode", "__note"]))
            if key in member and draw(st.booleans()):
                del member[key]
            else:
                member[key] = draw(_ODD_VALUES)
        elif kind == "output":
            key = draw(st.sampled_from(["audioOption", "videoOption", "rtc"]))
            if key != "rtc" and draw(st.booleans()):
                out.pop(key, None)
            elif key == "rtc":
                out["rtc"][draw(st.sampled_from(["rtcToken", "rtcUid"]))] = draw(
                    st.sampled_from(["other", 9001])
                )
            else:
                option = out.setdefault(key, {})
                option[draw(st.sampled_from(["bitrate", "fps", "profileType"]))] = draw(_ODD_VALUES)
        elif kind == "whole":
            key = draw(st.sampled_from(["canvas", "idleTimeout", "audioInputs", "waterMarks"]))
            if key == "audioInputs" and key in t:
                del t[key]
            elif key == "canvas":
                t["canvas"]["color"] = draw(st.integers(0, 255))
            elif key == "idleTimeout":
                t["idleTimeout"] = draw(st.sampled_from([300, 60]))
            elif key == "waterMarks":
                t["waterMarks"] = [{"imageUrl": "https://cdn.example.com/w.png", "region": {}}]
    return new


_EDITS = ("join", "leave", "move", "member", "member-key", "output", "whole")
_EDITS_WEIGHTED = (*_EDITS, "join", "leave", "move", "move", "member")


@st.composite
def _pair(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    old = draw(_variant())
    return old, draw(_edited(old))


class TestPlainDiffAgreesWithDeepDiff:
    """The plain-dict fast path and DeepDiff give the same plan for every pair of bodies."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_pair())
    def test_same_plan_either_way(self, pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
        old, new = pair
        live = live_of(old, seq=2)
        assert plan_for(new, live) == _deepdiff_only(new, live)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_variant(), _variant())
    def test_same_plan_for_unrelated_bodies(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        live = live_of(old)
        assert plan_for(new, live) == _deepdiff_only(new, live)

    @pytest.mark.parametrize(
        ("edit", "action"),
        [
            ("join", "update"),
            ("leave", "update"),
            ("swap", "update"),
            ("move", "update"),
            ("token", "update"),
            ("bitrate", "update"),
            ("audio-option", "update"),
            ("type", "update"),
            ("placeholder", "replace"),
            ("member-channel", "replace"),
            ("member-key", "replace"),
            ("out-token", "replace"),
            ("output-uid", "replace"),
            ("no-video-option", "replace"),
        ],
    )
    def test_common_changes_take_the_fast_path(self, edit: str, action: str) -> None:
        old = body(THREE, audio=[101, 102, 103], profile="AUDIO_PROFILE_DEFAULT")
        new = copy.deepcopy(old)
        t = _transcoder_of(new)
        video, out = t["videoInputs"], t["outputs"][0]
        if edit == "join":
            joined = copy.deepcopy(video[0])
            joined["rtc"]["rtcUid"] = 104
            video.append(joined)
        elif edit == "leave":
            del video[0], t["audioInputs"][0]
        elif edit == "swap":
            video[0]["rtc"]["rtcUid"] = t["audioInputs"][0]["rtc"]["rtcUid"] = 104
        elif edit == "move":
            video[1]["region"].update(x=0, width=1280)
        elif edit == "token":
            video[2]["rtc"]["rtcToken"] = "rotated-SECRET"
        elif edit == "bitrate":
            out["videoOption"]["bitrate"] = 2000
        elif edit == "audio-option":
            del out["audioOption"]
        elif edit == "type":
            video[0]["region"]["x"] += 2
            video[0]["region"]["zOrder"] = False  # == 0, but to DeepDiff a bool is no int
        elif edit == "placeholder":
            video[0]["placeholderImageUrl"] = "https://cdn.example.com/x.png"
        elif edit == "member-channel":
            video[0]["rtc"]["rtcChannel"] = "elsewhere"
        elif edit == "member-key":
            video[0]["renderMode"] = 1
        elif edit == "out-token":
            out["rtc"]["rtcToken"] = "rotated-out"
        elif edit == "output-uid":
            out["rtc"]["rtcUid"] = 9001
        elif edit == "no-video-option":
            del out["videoOption"]
        assert _plain_or_none(old, new) is not None
        live = live_of(old, seq=0)
        plan = plan_for(new, live)
        assert plan.action == action
        assert plan == _deepdiff_only(new, live)
        assert "SECRET" not in plan.render() + json.dumps(plan.as_dict())

    @pytest.mark.parametrize(
        "edit", ["canvas", "scenario", "watermark", "list-value", "float-value", "private-key"]
    )
    def test_other_changes_go_to_deepdiff(self, edit: str) -> None:
        old = body(THREE)
        new = copy.deepcopy(old)
        t = _transcoder_of(new)
        video = t["videoInputs"]
        if edit == "canvas":
            t["canvas"]["color"] = 255
        elif edit == "scenario":
            del t["videoInputs"]
            t["audioInputs"] = [{"rtc": item["rtc"]} for item in video]
        elif edit == "watermark":
            t["waterMarks"] = [{"imageUrl": "https://cdn.example.com/w.png", "region": {}}]
        elif edit == "list-value":
            video[0]["region"]["x"], old_x = [1], video[0]["region"]["x"]
            _transcoder_of(old)["videoInputs"][0]["region"]["x"] = [old_x]
        elif edit == "float-value":
            video[0]["region"]["x"] = 0.5
            _transcoder_of(old)["videoInputs"][0]["region"]["x"] = 1.5
        elif edit == "private-key":
            video[0]["__note"] = "DeepDiff skips keys starting with __"
            video[0]["region"]["x"] += 2
        assert _plain_or_none(old, new) is None
        live = live_of(old)
        assert plan_for(new, live) == _deepdiff_only(new, live)
