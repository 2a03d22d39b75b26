"""What a reconcile costs: the noop fast path against the naive check, and a changed one.

Goals (issue 5): an event that changes nothing — ``set_hosts(same 16 hosts)``
then ``reconcile()`` — is >= 250x faster than the naive path (jsonschema
validation + DeepDiff of the full bodies), measured in the same run, and
<= ~20 µs median. A changed reconcile's own cost is reported too: the service
answers instantly (``httpx.MockTransport``), so the figure is layoutsync's work
(compile + uncached validation, plan with DeepDiff, client, state writes)
without a network round trip. Each changed reconcile swaps one host for a new
uid, so every body is new and its validation is never a cache hit. Its
breakdown also times the planner's diff step alone, by the plain-dict fast
path and by DeepDiff, on the same pruned trees (``diff_plain_us`` and
``diff_deepdiff_us``).
"""

from __future__ import annotations

import copy
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
from deepdiff import DeepDiff

from .._resources import load_schema
from ..api.client import Client
from ..apply import Session
from ..canonical import canonical_hash
from ..compile import compile_layout
from ..plan import Live, _deepdiff_changes, _plain_changes, _prune, make_plan, normalise
from ..spec import load_spec
from ..store import MemoryStore, SqliteStore, StateStore
from . import BenchOptions, Figure, measure, quiet_logs
from .compile import GRID_16

__all__ = ["run"]

_HOSTS = tuple(range(101, 117))


def _service(request: httpx.Request) -> httpx.Response:
    """A Cloud Transcoder that answers at once (no validation, no state worth the name)."""
    task = {"taskId": "bench-task", "status": "IN_PROGRESS", "createTs": 1, "sequenceId": "0"}
    if request.method == "POST" and request.url.path.endswith("/builderTokens"):
        body = {"tokenName": "bench-token", "createTs": int(time.time()), "instanceId": "bench"}
        return httpx.Response(200, json=body)
    if request.method == "PATCH":
        return httpx.Response(200, json={})
    return httpx.Response(200, json=task)


def _client() -> Client:
    """A client whose every call is answered in-process by ``_service``."""
    return Client(
        base_url="http://bench.invalid",
        app_id="bench",
        customer_key="bench-key",
        customer_secret="bench-secret",
        transport=httpx.MockTransport(_service),
    )


def _session(store: StateStore) -> Session:
    session = Session(load_spec(GRID_16), client=_client(), store=store)
    session.set_hosts(_HOSTS)
    session.reconcile().raise_for_error()
    return session


def _changer(session: Session, first_uid: int) -> Callable[[], object]:
    """One host leaves and a new one joins, then reconcile: always one Update, a new body.

    Each measurement takes its own uid range, so no body (and no validation) repeats.
    """
    fresh = itertools.count(first_uid)

    def change() -> object:
        session.host_left(session.hosts[0])
        session.host_joined(next(fresh))
        result = session.reconcile()
        if result.action != "update" or result.error is not None:
            raise RuntimeError(f"expected an Update, got {result.action} ({result.error})")
        return result

    return change


def run(options: BenchOptions) -> list[Figure]:
    with quiet_logs():
        return _run(options)


def _run(options: BenchOptions) -> list[Figure]:
    budget = 0.1 if options.quick else 0.4
    rounds = 7 if options.quick else 21

    # --- noop: the fast path against the naive check of the same state -----------------------
    session = _session(MemoryStore())
    hosts = list(_HOSTS)

    def noop() -> object:
        session.set_hosts(hosts)
        return session.reconcile()

    compiled = session.compiled
    assert compiled is not None and compiled.body is not None
    applied = orjson.loads(orjson.dumps(compiled.body))
    desired = copy.deepcopy(applied)
    schema = load_schema("transcoder-request")
    validator = jsonschema.validators.validator_for(schema)(schema)

    def naive() -> object:
        validator.validate(desired)
        return DeepDiff(applied, desired)

    fast_s = measure(noop, budget=budget, rounds=rounds)
    naive_s = measure(naive, budget=budget, rounds=rounds)

    # --- a changed reconcile, and where its time goes -------------------------------------------
    changed_s = measure(_changer(_session(MemoryStore()), 1_000_000), budget=budget, rounds=rounds)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_s = {}
        for first_uid, mode in ((2_000_000, "NORMAL"), (3_000_000, "FULL")):
            store = SqliteStore(Path(tmp) / f"{mode}.db", synchronous=mode)
            sqlite_s[mode] = measure(
                _changer(_session(store), first_uid), budget=budget, rounds=rounds
            )
            store.close()
    parts = _breakdown(budget, rounds)

    details: dict[str, float | int | str] = {
        "hosts": len(_HOSTS),
        "noop_us": round(fast_s * 1e6, 2),
        "naive_us": round(naive_s * 1e6, 1),
    }
    changed: dict[str, float | int | str] = {
        "memory_store_us": round(changed_s * 1e6, 1),
        "sqlite_normal_us": round(sqlite_s["NORMAL"] * 1e6, 1),
        "sqlite_full_us": round(sqlite_s["FULL"] * 1e6, 1),
        **{f"{name}_us": round(seconds * 1e6, 1) for name, seconds in parts.items()},
    }
    ratio = naive_s / fast_s
    return [
        Figure(
            bench="reconcile",
            name="noop_fast_path",
            value=fast_s * 1e6,
            unit="us",
            goal="<= 20",
            ok=fast_s <= 20e-6,
            details=details,
            machine=True,  # microseconds of this machine; the ratio below is the real check
        ),
        Figure(
            bench="reconcile",
            name="naive_vs_noop",
            value=ratio,
            unit="x",
            goal=">= 250",
            ok=ratio >= 250,
            details=details,
        ),
        Figure(
            bench="reconcile",
            name="changed_update_own_cost",
            value=changed_s * 1e6,
            unit="us",
            details=changed,
        ),
    ]


def _breakdown(budget: float, rounds: int) -> dict[str, float]:
    """The parts of a changed reconcile, each measured alone on fresh bodies."""
    spec = load_spec(GRID_16)
    fresh = itertools.count(4_000_000)

    base = compile_layout(spec, _HOSTS)
    assert base.body is not None

    def hosts() -> list[int]:
        uid = next(fresh)
        return [*_HOSTS[1:], uid]

    def compile_validate() -> object:
        return compile_layout(spec, hosts(), previous=base)

    live = Live(
        "bench-task", base.body, base.body_hash, sequence_id=3, instance_id=spec.instance_id
    )
    bodies = [compile_layout(spec, hosts(), previous=base).body for _ in range(64)]
    hashes = [canonical_hash(body) for body in bodies]
    cycle = itertools.cycle(range(len(bodies)))

    def plan() -> object:
        i = next(cycle)
        made = make_plan(bodies[i], hashes[i], live, instance_id=spec.instance_id)
        if made.action != "update":
            raise RuntimeError(f"expected an update plan, got {made.action}")
        return made

    live_tree = normalise(base.body)
    pruned = [_prune(live_tree, normalise(body)) for body in bodies if body is not None]

    def diff_plain() -> object:
        found = _plain_changes(*pruned[next(cycle)])
        if found is None:
            raise RuntimeError("a host swap must take the plain-dict path")
        return found

    def diff_deepdiff() -> object:
        return _deepdiff_changes(*pruned[next(cycle)])

    client = _client()
    body: Any = base.body
    sequence = itertools.count()

    def update() -> object:
        return client.update("bench-task", "bench-token", next(sequence), body)

    return {
        "compile_and_validate": measure(compile_validate, budget=budget, rounds=rounds),
        "plan": measure(plan, budget=budget, rounds=rounds),
        "diff_plain": measure(diff_plain, budget=budget, rounds=rounds),
        "diff_deepdiff": measure(diff_deepdiff, budget=budget, rounds=rounds),
        "client_update": measure(update, budget=budget, rounds=rounds),
    }
