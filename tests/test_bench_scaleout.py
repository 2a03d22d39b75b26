"""The scaleout bench's own arithmetic (the run itself is ``layoutsync bench scaleout``)."""

from __future__ import annotations

import os
import sys
import time

import pytest

from layoutsync.bench.scaleout import _cpu_seconds, _latencies, _percentile


def test_an_event_is_carried_by_the_first_update_of_its_session_after_it() -> None:
    tasks = [{"taskId": "t1", "instanceId": "s1-1"}, {"taskId": "t2", "instanceId": "s2-1"}]
    updates = [
        {"path": "/v1/projects/a/rtsc/cloud-transcoder/tasks/t1", "time": 10.0},
        {"path": "/v1/projects/a/rtsc/cloud-transcoder/tasks/t1", "time": 14.0},
        {"path": "/v1/projects/a/rtsc/cloud-transcoder/tasks/t2", "time": 11.0},
    ]
    events = [(9.0, "s1"), (9.5, "s1"), (12.0, "s1"), (10.5, "s2"), (20.0, "s2")]
    latencies, absorbed = _latencies(events, updates, tasks)
    assert sorted(latencies) == [0.5, 0.5, 1.0, 2.0]
    assert absorbed == 1  # the last event of s2 needed no call


def test_percentile() -> None:
    assert _percentile([], 0.99) == 0.0
    assert _percentile([float(i) for i in range(1, 101)], 0.99) == 100.0
    assert _percentile([3.0, 1.0, 2.0], 0.5) == 2.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_cpu_seconds_of_a_process_grow_with_its_work() -> None:
    before = _cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    after = _cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert 0.1 <= after - before <= 5.0
    assert _cpu_seconds(2**22 + 12345) is None  # no such process
