"""Crash suite: the daemon SIGKILLed at random moments loses nothing it acknowledged.

``layoutsync emulator`` and ``layoutsync daemon`` run as real processes. A
trace of API calls and signed NCS webhooks goes to the daemon; a timer
SIGKILLs it at a random moment (inside the 0.5 s debounce window or after
it, while a request is in flight or between two), and it is restarted with
the same ``--state``, several times. The test keeps a model of what was
acknowledged (202/200): a request that got no answer is sent again after
the restart, as an API caller or NCS would. At the end every session's live
config on the emulator (Queried with its builderToken, tokens and all)
equals the body compiled from the hosts last acknowledged, there is exactly
one task per instanceId, and no sequenceId was sent twice to a task.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_daemon_e2e import AUTH, NCS_SECRET, Child, World, session, settled
from test_daemon_e2e import world as world  # the fixture

from layoutsync.api.client import Client
from layoutsync.apply import _slots_of
from layoutsync.compile import compile_layout
from layoutsync.daemon.webhooks import SIGNATURE_V2_HEADER, sign
from layoutsync.emulator import DEFAULT_APP_ID, DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET
from layoutsync.spec import load_spec
from layoutsync.store import SqliteStore

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IN_TOKEN = "crash-suite-IN-rtc-token-7f3a"
OUT_TOKEN = "crash-suite-OUT-rtc-token-91cd"


def kill(daemon: Child) -> None:
    """SIGKILL: no drain, no clean stop, nothing saved on the way out."""
    daemon.stop(signal.SIGKILL)


def live_config(world: World, name: str) -> dict[str, Any]:
    """The task's applied ``transcoder`` as the service holds it: real tokens, no masks."""
    with SqliteStore(world.state) as store:
        state = store.load(name)
    assert state is not None and state.task_id and state.builder_token, state
    echo = httpx.patch(f"{world.emulator.url}/_emulator/config", json={"echoConfig": True})
    echo.raise_for_status()
    client = Client(
        base_url=world.emulator.url,
        app_id=DEFAULT_APP_ID,
        customer_key=DEFAULT_CUSTOMER_KEY,
        customer_secret=DEFAULT_CUSTOMER_SECRET,
    )
    with client:
        task = client.query(state.task_id, state.builder_token)
    config: dict[str, Any] = task.raw["services"]["cloudTranscoder"]["config"]["transcoder"]
    return config


def test_the_issue_reproduction_join_inside_the_debounce_window(world: World) -> None:
    """Issue 10: PUT 101; 1.5 s; PUT 102 (202); SIGKILL 50 ms later; restart: 101 and 102."""
    (world.specs / "hall.json").unlink()
    shutil.copy(EXAMPLES / "grid.json", world.specs / "g.json")
    daemon = world.start_daemon()
    with httpx.Client(base_url=daemon.url, headers=AUTH, timeout=10) as api:
        assert api.put("/v1/sessions/g/hosts/101").status_code == 202
        time.sleep(1.5)
        assert api.put("/v1/sessions/g/hosts/102").status_code == 202
    time.sleep(0.05)
    kill(daemon)

    again = world.start_daemon()
    assert session(again, "g")["hosts"] == [101, 102]
    settled(again, "g")
    assert world.video_uids("room42-grid") == [101, 102]
    assert world.creates() == 1
    assert again.stop() == 0


@dataclass
class Model:
    """What the daemon acknowledged, applied with the library's rules (join order kept)."""

    hosts: dict[str, list[int]]
    seqs: dict[tuple[str, int], int] = field(default_factory=dict)

    def join(self, name: str, uid: int) -> None:
        if uid not in self.hosts[name]:
            self.hosts[name].append(uid)

    def leave(self, name: str, uid: int) -> None:
        if uid in self.hosts[name]:
            self.hosts[name].remove(uid)

    def set(self, name: str, uids: list[int]) -> None:
        keep = [uid for uid in self.hosts[name] if uid in uids]
        self.hosts[name] = keep + [uid for uid in uids if uid not in keep]


@dataclass(frozen=True)
class Event:
    name: str
    kind: str  # join | leave | set | hook-join | hook-leave
    uid: int = 0
    uids: tuple[int, ...] = ()
    seq: int = 0


class Trace:
    """Random events over a few sessions; never empties one (onEmpty=idle keeps the old
    config live, which is not what this suite checks)."""

    def __init__(self, rng: random.Random, names: list[str]) -> None:
        self.rng = rng
        self.names = names
        self.model = Model({name: [] for name in names})
        self.next_seq: Counter[tuple[str, int]] = Counter()

    def next(self) -> Event:
        """The next event, drawn from the model of what is acknowledged so far: draw it
        right before sending it, not a burst ahead (a burst drawn at once can leave both
        hosts of a two-host session and empty it)."""
        rng, name = self.rng, self.rng.choice(self.names)
        present = self.model.hosts[name]
        uid = rng.randint(1, 6)
        if not present:
            kind = rng.choice(["join", "hook-join", "set"])
        else:
            kind = rng.choice(["join", "leave", "set", "hook-join", "hook-leave", "hook-leave"])
            if kind in ("leave", "hook-leave"):
                if len(present) < 2:
                    kind = "join"
                else:
                    uid = rng.choice(present)
        if kind == "set":
            uids = tuple(rng.sample(range(1, 7), rng.randint(1, 4)))
            return Event(name, "set", uids=uids)
        if kind.startswith("hook"):
            self.next_seq[name, uid] += rng.randint(1, 3)
            return Event(name, kind, uid=uid, seq=self.next_seq[name, uid])
        return Event(name, kind, uid=uid)

    def apply(self, event: Event) -> None:
        model = self.model
        if event.kind in ("join", "hook-join"):
            model.join(event.name, event.uid)
        elif event.kind in ("leave", "hook-leave"):
            model.leave(event.name, event.uid)
        else:
            model.set(event.name, list(event.uids))
        if event.kind.startswith("hook"):
            model.seqs[event.name, event.uid] = event.seq


def send(api: httpx.Client, event: Event) -> httpx.Response:
    path = f"/v1/sessions/{event.name}/hosts"
    if event.kind == "join":
        return api.put(f"{path}/{event.uid}")
    if event.kind == "leave":
        return api.delete(f"{path}/{event.uid}")
    if event.kind == "set":
        return api.put(path, json={"hosts": list(event.uids)})
    return hook(api, event.name, event.uid, event.seq, joined=event.kind == "hook-join")


def hook(api: httpx.Client, channel: str, uid: int, seq: int, *, joined: bool) -> httpx.Response:
    body = json.dumps(
        {
            "noticeId": f"crash:{channel}:{uid}:{seq}",
            "productId": 1,
            "eventType": 103 if joined else 104,
            "notifyMs": int(time.time() * 1000),
            "payload": {"channelName": channel, "uid": uid, "clientSeq": seq},
        }
    ).encode()
    return api.post(
        "/v1/webhooks/agora",
        content=body,
        headers={"Content-Type": "application/json", SIGNATURE_V2_HEADER: sign(NCS_SECRET, body)},
    )


def spec(instance_id: str, channel: str) -> dict[str, Any]:
    return {
        "instanceId": instance_id,
        "input": {"channel": channel, "token": "env:CRASH_IN_TOKEN"},
        "output": {
            "channel": f"{channel}-live",
            "uid": 9000,
            "token": "env:CRASH_OUT_TOKEN",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://example.com/placeholder.png",
        "layout": {"template": "grid", "gap": 4},
    }


@pytest.fixture
def tokens(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    world.env.update(CRASH_IN_TOKEN=IN_TOKEN, CRASH_OUT_TOKEN=OUT_TOKEN)
    monkeypatch.setenv("CRASH_IN_TOKEN", IN_TOKEN)  # compiling the expected bodies here
    monkeypatch.setenv("CRASH_OUT_TOKEN", OUT_TOKEN)
    yield


KILLS = 6
SESSIONS = 4


def test_the_trace_never_empties_a_session_it_has_joined() -> None:
    """The trace drawn event by event, each acknowledged, keeps every joined session
    non-empty; drawn a burst ahead (as the suite once did), 611 seeds of 2000 emptied one."""
    for seed in range(300):
        rng = random.Random(seed)
        trace = Trace(rng, [f"s{i}" for i in range(SESSIONS)])
        for _ in range(KILLS * 8):
            event = trace.next()
            joined = bool(trace.model.hosts[event.name])
            trace.apply(event)
            assert trace.model.hosts[event.name] or not joined, (seed, event)


def test_sigkill_at_random_moments_loses_no_acknowledged_change(world: World, tokens: None) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    (world.specs / "hall.json").unlink()
    names = [f"s{i}" for i in range(SESSIONS)]
    for name in names:
        (world.specs / f"{name}.json").write_text(json.dumps(spec(f"crash-{name}", name)))
    trace = Trace(rng, names)
    unacked: list[Event] = []  # sent, no answer: sent again after the restart
    moments: list[str] = []
    tally: Counter[str] = Counter()
    for round_ in range(KILLS + 1):
        daemon = world.start_daemon()
        with httpx.Client(base_url=daemon.url, headers=AUTH, timeout=10) as api:
            if round_:
                stale_webhooks_are_ignored(api, trace, rng)
            for event in unacked:
                response = send(api, event)
                assert response.status_code in (200, 202), (seed, response.text)
                trace.apply(event)
            unacked = []
            if round_ == KILLS:
                for name in names:  # a session the trace never joined would compile to no body
                    if not trace.model.hosts[name]:
                        event = Event(name, "join", uid=rng.randint(1, 6))
                        assert send(api, event).status_code == 202, seed
                        trace.apply(event)
                break
            burst = rng.randint(2, 8)
            # kill during the burst (requests in flight) or up to 0.9 s after it
            # (inside and outside the 0.5 s debounce window of its last event)
            killer = threading.Timer(rng.uniform(0.0, 0.9 + 0.02 * burst), kill, (daemon,))
            started = last_ack = time.monotonic()
            killer.start()
            try:
                for _ in range(burst):
                    # drawn from the model of what is acknowledged so far: a burst drawn
                    # all at once could leave both of a session's two hosts and empty it
                    event = trace.next()
                    try:
                        response = send(api, event)
                    except httpx.TransportError:
                        unacked.append(event)
                        break
                    if response.status_code not in (200, 202):
                        raise AssertionError((seed, event, response.status_code, response.text))
                    trace.apply(event)
                    last_ack = time.monotonic()
                    tally["acknowledged"] += 1
            finally:
                killer.join()
            killed_at = time.monotonic()
            moments.append(f"{killed_at - started:.2f}")
            tally[
                "in flight"
                if unacked
                else "within debounce"
                if killed_at - last_ack < 0.5
                else "after debounce"
            ] += 1
    try:
        for name in names:
            status = settled(daemon, name)
            assert status["hosts"] == trace.model.hosts[name], (seed, name, moments)
    finally:
        assert daemon.stop() == 0

    tasks = world.emu("/_emulator/tasks")["tasks"]
    per_instance = Counter(task["instanceId"] for task in tasks)
    created = Counter(
        event["instanceId"]
        for event in world.emu("/_emulator/events")["events"]
        if event["event"] == "created"
    )
    assert per_instance == created == Counter(f"crash-{name}" for name in names), seed
    assert all(task["staleUpdates"] == 0 for task in tasks), (seed, tasks)
    sent: Counter[tuple[str, str]] = Counter(
        (entry["path"], entry["query"]["sequenceId"])
        for entry in world.emu("/_emulator/requests", kind="update")["requests"]
    )
    assert all(count == 1 for count in sent.values()), (seed, sent.most_common(3))

    with SqliteStore(world.state) as store:
        states = {name: store.load(name) for name in names}
    for name in names:
        loaded = load_spec(world.specs / f"{name}.json")
        state = states[name]
        assert state is not None
        hosts = tuple(trace.model.hosts[name])
        body = compile_layout(loaded, hosts, None, _slots_of(state.slots)).body
        assert body is not None, (seed, name, hosts)
        expected = body["services"]["cloudTranscoder"]["config"]["transcoder"]
        assert live_config(world, name) == expected, (seed, name)
    data = b"".join(path.read_bytes() for path in world.tmp.glob("state.db*"))
    assert IN_TOKEN.encode() not in data and OUT_TOKEN.encode() not in data
    print(f"crash suite: seed={seed} kills={KILLS} sessions={SESSIONS} {dict(tally)}")


def stale_webhooks_are_ignored(api: httpx.Client, trace: Trace, rng: random.Random) -> None:
    """After a SIGKILL, a webhook older than one acknowledged before it changes nothing."""
    seen = [(key, seq) for key, seq in trace.model.seqs.items() if seq > 1]
    for (channel, uid), seq in rng.sample(seen, min(2, len(seen))):
        joined = uid not in trace.model.hosts[channel]  # the stale event would undo the last
        response = hook(api, channel, uid, seq - 1, joined=joined)
        assert response.status_code == 200
        assert response.json().get("ignored") == "clientSeq not above the last seen", (
            channel,
            uid,
            seq,
        )
