"""HeapPolicy: long-lived objects frozen, full collections kept small, cycles still reclaimed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from layoutsync.daemon.heap import HeapPolicy
from layoutsync.daemon.runtime import Daemon, DaemonSettings
from layoutsync.store import MemoryStore


class Node:
    """A member of a reference cycle (weak-referenceable, so a test can see it die)."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(b)


@pytest.fixture
def policy() -> Iterator[HeapPolicy]:
    heap = HeapPolicy()
    yield heap
    heap.uninstall()


def test_install_freezes_what_is_alive(policy: HeapPolicy) -> None:
    assert gc.get_freeze_count() == 0
    policy.install()
    assert policy.installed
    assert gc.get_freeze_count() > 0


def test_a_full_collection_freezes_what_became_long_lived(policy: HeapPolicy) -> None:
    policy.install()
    before = gc.get_freeze_count()
    kept = [[index] for index in range(1000)]  # 1,001 tracked lists
    gc.collect()  # a full collection, as the collector runs on its own now and then
    assert gc.get_freeze_count() >= before + len(kept)


def test_a_young_collection_freezes_nothing(policy: HeapPolicy) -> None:
    policy.install()
    before = gc.get_freeze_count()
    kept = [[index] for index in range(1000)]
    gc.collect(0)
    assert gc.get_freeze_count() == before
    assert kept


def test_frozen_objects_are_still_freed_by_reference_counting(policy: HeapPolicy) -> None:
    single = Node()
    gone = weakref.ref(single)
    policy.install()
    del single
    assert gone() is None


def test_a_frozen_cycle_waits_for_compact(policy: HeapPolicy) -> None:
    head, member = cycle()
    policy.install()
    del head
    gc.collect()
    assert member() is not None, "a frozen cycle is not walked by an ordinary collection"
    report = policy.compact()
    assert member() is None
    assert report["collected"] >= 2
    assert report["frozen"] == gc.get_freeze_count() > 0
    assert 0 < report["pause_ms"] < 60_000  # measured, not a placeholder zero


def test_uninstall_hands_everything_back(policy: HeapPolicy) -> None:
    policy.install()
    head, member = cycle()
    gc.collect()  # frozen now
    policy.uninstall()
    assert not policy.installed
    assert gc.get_freeze_count() == 0
    del head
    gc.collect()
    assert member() is None
    gc.collect()
    assert gc.get_freeze_count() == 0, "no freezing after uninstall"


def test_install_and_uninstall_are_idempotent(policy: HeapPolicy) -> None:
    callbacks = len(gc.callbacks)
    policy.install()
    policy.install()
    assert len(gc.callbacks) == callbacks + 1
    policy.uninstall()
    policy.uninstall()
    assert len(gc.callbacks) == callbacks
    assert gc.get_freeze_count() == 0


def test_the_last_of_two_policies_takes_it_back() -> None:
    # The collector is process-wide: two daemons in one process share the policy.
    before = gc.get_threshold()
    first, second = HeapPolicy(), HeapPolicy()
    first.install()
    second.install()
    first.uninstall()
    assert gc.get_threshold()[2] == 0
    assert gc.get_freeze_count() > 0
    second.uninstall()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


# --- in the daemon ----------------------------------------------------------------------------


def _daemon(tmp_path: Path, **settings: Any) -> Daemon:
    config = tmp_path / "specs"
    config.mkdir()
    return Daemon(
        DaemonSettings(config=config, watch=False, **settings),
        client=object(),
        store=MemoryStore(),
    )


def test_a_negative_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="full_gc_interval must be >= 0"):
        DaemonSettings(config=tmp_path, full_gc_interval=-1)


@pytest.mark.anyio
async def test_the_daemon_freezes_while_it_runs(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path)
    await daemon.start()
    try:
        assert daemon.heap.installed
        assert gc.get_freeze_count() > 0
    finally:
        await daemon.stop()
    assert not daemon.heap.installed
    assert gc.get_freeze_count() == 0


@pytest.mark.anyio
async def test_interval_zero_leaves_the_collector_alone(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, full_gc_interval=0)
    await daemon.start()
    try:
        assert not daemon.heap.installed
        assert gc.get_freeze_count() == 0
    finally:
        await daemon.stop()


@pytest.mark.anyio
async def test_the_daemon_compacts_every_interval(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, full_gc_interval=0.05)
    head, member = cycle()
    with capture_logs() as logs:
        await daemon.start()
        try:
            del head
            for _ in range(100):
                if member() is None:
                    break
                await asyncio.sleep(0.02)
        finally:
            await daemon.stop()
    assert member() is None, "the frozen cycle was reclaimed by a compaction"
    compacted = [entry for entry in logs if entry["event"] == "heap compacted"]
    assert compacted
    assert {"collected", "frozen", "pause_ms"} <= compacted[0].keys()


def test_every_middle_collection_is_a_full_one_while_installed(policy: HeapPolicy) -> None:
    before = gc.get_threshold()
    policy.install()
    assert gc.get_threshold() == (before[0], before[1], 0)
    policy.uninstall()
    assert gc.get_threshold() == before
