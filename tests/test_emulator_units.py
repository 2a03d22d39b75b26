"""The emulator's pure parts without HTTP: fault vocabulary and plan, Update rules, the core."""

from __future__ import annotations

import copy

import pytest
from emulator_helpers import audio_input, av_transcoder, body, output, video_input
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutsync.emulator import Emulator, EmulatorConfig, ManualClock
from layoutsync.emulator.faults import (
    FaultAction,
    FaultError,
    FaultPlan,
    FaultRule,
    RandomFaults,
    parse_action,
    parse_rule,
)
from layoutsync.emulator.rules import handled_hosts, instance_id_error, update_violations

# --- fault vocabulary ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("429", FaultAction("429", status=429)),
        ("503", FaultAction("503", status=503)),
        ("202", FaultAction("202", status=202, commit=True)),
        ("drop", FaultAction("drop", drop=True)),
        ("commit-504", FaultAction("commit-504", status=504, commit=True)),
        ("commit-drop", FaultAction("commit-drop", commit=True, drop=True)),
        ("delay", FaultAction("delay", delay=2.5)),
        (" Commit-500 ", FaultAction("commit-500", status=500, commit=True)),
        ("late", FaultAction("late", commit=True, delay=2.5, late=True)),
        ("disconnect", FaultAction("disconnect", drop=True, before_response=True)),
        (
            "commit-disconnect",
            FaultAction("commit-disconnect", commit=True, drop=True, before_response=True),
        ),
    ],
)
def test_fault_actions(text: str, expected: FaultAction) -> None:
    assert parse_action(text, delay=2.5) == expected


@pytest.mark.parametrize("text", ["200", "302", "5000", "commit-400", "commit-", "boom", ""])
def test_unknown_fault_actions_are_refused(text: str) -> None:
    with pytest.raises(FaultError):
        parse_action(text, delay=1)


def test_delay_needs_a_duration() -> None:
    with pytest.raises(FaultError, match="delay"):
        parse_action("delay", delay=0)
    with pytest.raises(FaultError, match="late needs a delay"):
        parse_action("late", delay=0)


def test_rule_syntax() -> None:
    assert parse_rule("update:commit-500:3") == FaultRule(
        "update", FaultAction("commit-500", status=500, commit=True), 3
    )
    assert parse_rule("any:429").count == 1
    for bad in ("update", "update:500:x", "update:500:0", "a:b:c:d"):
        with pytest.raises(FaultError):
            parse_rule(bad)


def test_plan_fires_rules_in_order_then_random() -> None:
    plan = FaultPlan()
    plan.add(FaultRule.make("create", "500", 2))
    plan.add(FaultRule.make("any", "429", 1))
    assert plan.take("query").name == "429"  # only "any" matches a query
    assert [getattr(plan.take("create"), "name", None) for _ in range(3)] == ["500", "500", None]
    plan.set_random(RandomFaults.make(1.0, seed=1, actions=["504"], kinds=["update"]))
    assert plan.take("update").name == "504"
    assert plan.take("delete") is None
    assert plan.fired == 4


def test_random_rate_zero_never_fires() -> None:
    plan = FaultPlan()
    plan.set_random(RandomFaults.make(0.0, seed=5))
    assert all(plan.take("update") is None for _ in range(200))


# --- Update rules ----------------------------------------------------------------------------


def _transcoder(uids: tuple[int, ...]) -> dict:
    return av_transcoder(uids)


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(st.integers(1, 40), min_size=1, max_size=8, unique=True),
    after=st.lists(st.integers(1, 40), min_size=1, max_size=8, unique=True),
    data=st.data(),
)
def test_membership_regions_and_order_are_updatable(before, after, data) -> None:
    old = _transcoder(tuple(before))
    new = _transcoder(tuple(after))
    # Kept members keep their placeholder wherever they sit; regions and tokens move freely.
    new["videoInputs"] = data.draw(st.permutations(new["videoInputs"]))
    new["audioInputs"] = data.draw(st.permutations(new["audioInputs"]))
    for item in new["videoInputs"]:
        item["region"]["x"] = data.draw(st.integers(0, 640))
        item["rtc"]["rtcToken"] = data.draw(st.text(min_size=1, max_size=8))
    assert update_violations(old, new) == []


@settings(max_examples=40, deadline=None)
@given(
    uids=st.lists(st.integers(1, 40), min_size=1, max_size=8, unique=True),
    color=st.integers(1, 16777215),
)
def test_canvas_is_never_updatable(uids, color) -> None:
    old = _transcoder(tuple(uids))
    new = copy.deepcopy(old)
    new["canvas"]["color"] = color
    (error,) = update_violations(old, new)
    assert error.pointer.endswith("/transcoder/canvas")


def test_present_and_default_valued_keys_differ() -> None:
    old = av_transcoder()
    new = copy.deepcopy(old)
    del new["idleTimeout"]  # 300 is the default, but the key vanished: a change
    assert [e.pointer.rsplit("/", 1)[1] for e in update_violations(old, new)] == ["idleTimeout"]


def test_audio_inputs_may_appear_or_vanish() -> None:
    old = av_transcoder()
    new = copy.deepcopy(old)
    del new["audioInputs"]  # audio then follows the video uids: a change of members
    assert update_violations(old, new) == []


def test_handled_hosts() -> None:
    transcoder = av_transcoder((101, 102), audioInputs=[audio_input(103)])
    assert handled_hosts(transcoder) == (frozenset({101, 102, 103}), False)
    mix = {"audioInputs": [audio_input(0)], "outputs": [output(video=False)]}
    assert handled_hosts(mix) == (frozenset(), True)
    assert video_input(5)["rtc"]["rtcUid"] == 5


@pytest.mark.parametrize(
    ("payload", "ok"),
    [({"instanceId": "a" * 64}, True), ({"instanceId": "a-b_C9"}, True), ([], False)],
)
def test_instance_id_rule(payload, ok: bool) -> None:
    assert (instance_id_error(payload) is None) is ok


# --- the core ----------------------------------------------------------------------------------


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="retried_create"):
        EmulatorConfig(retried_create=204)
    with pytest.raises(ValueError, match="qps"):
        EmulatorConfig(qps=0)
    assert "emulator-secret" not in repr(EmulatorConfig())


def test_seeded_emulators_are_reproducible() -> None:
    def run() -> tuple[str, str]:
        emulator = Emulator(EmulatorConfig(seed=99), clock=ManualClock())
        token = emulator.acquire("emulator-app", {"instanceId": "a"}).body["tokenName"]
        task = emulator.create("emulator-app", token, body(av_transcoder())).body["taskId"]
        return token, task

    assert run() == run()


def test_expired_unused_tokens_are_forgotten() -> None:
    clock = ManualClock()
    emulator = Emulator(EmulatorConfig(seed=1), clock=clock)
    old = emulator.acquire("emulator-app", {"instanceId": "a"}).body["tokenName"]
    clock.advance(301)
    emulator.acquire("emulator-app", {"instanceId": "a"})  # purges on the way
    reply = emulator.create("emulator-app", old, body(av_transcoder()))
    assert reply.status == 400 and "unknown or expired" in reply.body["message"]


def test_clock_only_moves_forward() -> None:
    emulator = Emulator(clock=ManualClock(100.0))
    assert emulator.advance_clock(5) == 105.0
    assert emulator.set_clock(200.0) == 200.0
    with pytest.raises(ValueError, match="backwards"):
        emulator.set_clock(150.0)
