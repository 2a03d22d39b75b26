"""``overflow: rotate``: the speaker is always visible and displaces the least recent speaker."""

from __future__ import annotations

from typing import Any

import pytest
from _sessionkit import GRID, Clock, Emulated, no_wait, spec_doc

from layoutsync.apply import Session
from layoutsync.bench.layout import region_moves
from layoutsync.compile import Compiled, SlotAssignment, compile_layout
from layoutsync.spec import LayoutSpec, load_spec
from layoutsync.store import MemoryStore

HOSTS = [1, 2, 3, 4, 5, 6]


def rotating(**layout: Any) -> LayoutSpec:
    return load_spec(
        spec_doc(layout={**GRID["layout"], "maxTiles": 4, "overflow": "rotate", **layout})
    )


def chain(spec: LayoutSpec, speakers: list[int | None], hosts: list[int] = HOSTS) -> list[Compiled]:
    previous: Compiled | None = None
    out = []
    for speaker in speakers:
        previous = compile_layout(spec, hosts, speaker, previous)
        out.append(previous)
    return out


def slots(compiled: Compiled) -> dict[int, int]:
    return {p.uid: p.slot for p in compiled.placements}


class TestRotate:
    def test_a_speaker_beyond_capacity_takes_the_least_recent_speakers_slot(self) -> None:
        first, five, six, one, four = chain(rotating(), [None, 5, 6, 1, 4])
        assert slots(first) == {1: 0, 2: 1, 3: 2, 4: 3}
        assert slots(five) == {1: 0, 2: 1, 3: 2, 5: 3}  # nobody spoke: the latest in order goes
        assert slots(six) == {1: 0, 2: 1, 6: 2, 5: 3}  # 5 spoke, 3 did not
        assert slots(one) == slots(six)  # a visible speaker moves nobody
        assert slots(four) == {1: 0, 4: 1, 6: 2, 5: 3}  # 2 spoke least recently (never)
        for before, after in ((first, five), (five, six), (six, one), (one, four)):
            assert region_moves(before, after) == 0  # the newcomer takes a region; nobody moves

    def test_the_speaker_is_always_visible_and_overflowed_hosts_stay_audible(self) -> None:
        for compiled in chain(rotating(), [None, 5, 6, 2, 3, 4, 1, 6]):
            if compiled.speaker is not None:
                assert compiled.speaker in compiled.visible
            assert set(compiled.audio) == set(HOSTS)

    def test_recency_travels_in_the_previous_result(self) -> None:
        *_, last = chain(rotating(), [5, 6, 1])
        assert last.slots.recency == (1, 6, 5)
        fresh = compile_layout(
            rotating(), HOSTS, 4, SlotAssignment("grid", last.slots.pairs, (1, 6, 5))
        )
        assert fresh.placements == compile_layout(rotating(), HOSTS, 4, last).placements

    def test_pinned_hosts_are_never_rotated_out(self) -> None:
        spec = rotating(pinned=[6])
        for compiled in chain(spec, [None, 5, 4, 3, 2, 1]):
            assert 6 in compiled.visible

    def test_a_leave_lets_the_next_overflowed_host_in(self) -> None:
        spec = rotating()
        first = compile_layout(spec, HOSTS, 5)
        after = compile_layout(spec, [1, 3, 4, 5, 6], 5, first)
        assert first.visible == (1, 2, 3, 5)
        assert after.visible == (1, 3, 4, 5)  # the next host in order takes 2's place
        assert region_moves(first, after) == 0

    @pytest.mark.parametrize("template", ["speaker", "custom"])
    def test_other_templates_rotate_too(self, template: str) -> None:
        extra: dict[str, Any] = {"template": template, "maxTiles": 3, "overflow": "rotate"}
        if template == "speaker":
            extra |= {"position": "right", "stripTiles": 2}
        else:
            extra |= {
                "units": "relative",
                "slots": [
                    {"x": 0, "y": 0, "width": 0.5, "height": 1, "host": "speaker"},
                    {"x": 0.5, "y": 0, "width": 0.5, "height": 0.5},
                    {"x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5},
                ],
            }
        spec = load_spec(spec_doc(layout=extra))
        for compiled in chain(spec, [None, 5, 6, 1, 4, 5]):
            if compiled.speaker is not None:
                assert compiled.speaker in compiled.visible
            assert len(compiled.visible) == 3


def test_a_session_and_a_chain_of_compiles_agree(emulated: Emulated) -> None:
    spec = rotating()
    store = MemoryStore()

    def session() -> Session:
        return Session(spec, client=emulated.client(), store=store, clock=Clock(), sleep=no_wait)

    s = session()
    s.set_hosts(HOSTS)
    expected = chain(spec, [None, 5, 6, 1, 4])
    s.reconcile().raise_for_error()
    for speaker, want in zip([5, 6, 1], expected[1:4], strict=True):
        s.set_speaker(speaker)
        s.reconcile().raise_for_error()
        assert s.compiled is not None and s.compiled.placements == want.placements
    # A restarted session reads the recency back from the store.
    again = session()
    again.set_hosts(HOSTS)
    again.set_speaker(4)
    again.reconcile().raise_for_error()
    assert again.compiled is not None and again.compiled.placements == expected[4].placements
