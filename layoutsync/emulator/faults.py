"""Fault injection: what the next calls of a kind get instead of (or after) the real answer.

One vocabulary of *actions* serves the admin API, the CLI flags and the
Python API:

    "429", "500", "503", "504", any 4xx/5xx   answer that status; nothing is applied
    "202"                                      apply the call, answer 202 with the usual body
    "delay"                                    sleep ``delay`` seconds, then answer normally
    "drop"                                     drop the connection; nothing is applied
    "commit-500" (any 5xx)                     apply the call, then answer that status
    "commit-drop"                              apply the call, then drop the connection
    "late"                                     no answer before the client's timeout; the
                                               call is applied ``delay`` seconds later
    "disconnect"                               close the connection before any byte of the
                                               response; nothing is applied
    "commit-disconnect"                        apply the call, then close the connection
                                               before any byte of the response

"drop" sends the response head, then cuts the body short; "disconnect" sends
nothing at all, which is what a client's connection-error path sees when a
server or a proxy dies between request and response.

A plan holds scheduled rules ("the next N calls of kind K") consumed in order,
and optionally random faults drawn from a seeded RNG, so a failing run can be
replayed exactly. Faults are consumed when an authorised, admitted call
arrives, whatever its outcome would have been.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTION_HELP",
    "CALL_KINDS",
    "DEFAULT_DELAY",
    "DEFAULT_RANDOM_ACTIONS",
    "NETWORK_ACTIONS",
    "FaultAction",
    "FaultError",
    "FaultPlan",
    "FaultRule",
    "RandomFaults",
    "parse_action",
    "parse_rule",
    "rule_from_json",
]

#: The five calls of the service, the values of ``kind`` (plus ``"any"``).
CALL_KINDS: tuple[str, ...] = ("acquire", "create", "query", "update", "delete")

#: What random faults draw from unless told otherwise.
DEFAULT_RANDOM_ACTIONS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "504",
    "delay",
    "202",
    "commit-500",
    "commit-drop",
)

#: The faults a network adds to the defaults: late application and no response at all.
NETWORK_ACTIONS: tuple[str, ...] = ("late", "disconnect", "commit-disconnect")

#: Seconds the "delay" action sleeps unless told otherwise: past any sane client timeout.
DEFAULT_DELAY = 15.0

ACTION_HELP = (
    "a status (429, 500, 503, 504, any 4xx/5xx: answered, nothing applied), 202 (applied, "
    "answered 202), delay (sleep, then answer), drop (connection dropped, nothing applied), "
    "commit-5xx (applied, then that status), commit-drop (applied, then connection dropped), "
    "late (no answer before the client's timeout, applied after it), disconnect (connection "
    "closed before any response byte, nothing applied), commit-disconnect (applied, then "
    "closed before any response byte)"
)


class FaultError(ValueError):
    """A fault description is malformed; the message says what is allowed."""


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What happens to one call. ``status`` is None when the connection is dropped.

    ``before_response`` makes a drop send no byte of the response (else the head
    goes out first); ``late`` applies the call only after the client's timeout.
    """

    name: str
    status: int | None = None
    commit: bool = False
    drop: bool = False
    delay: float = 0.0
    before_response: bool = False
    late: bool = False


def parse_action(text: str, *, delay: float = DEFAULT_DELAY) -> FaultAction:
    """The action named ``text`` (see the module docstring); ``delay`` is used by "delay"."""
    name = str(text).strip().lower()
    if name == "delay":
        if delay <= 0:
            raise FaultError(f"delay must be > 0 seconds, got {delay}")
        return FaultAction(name, delay=delay)
    if name == "drop":
        return FaultAction(name, drop=True)
    if name == "commit-drop":
        return FaultAction(name, commit=True, drop=True)
    if name == "late":
        if delay <= 0:
            raise FaultError(f"late needs a delay > 0 seconds, got {delay}")
        return FaultAction(name, commit=True, delay=delay, late=True)
    if name == "disconnect":
        return FaultAction(name, drop=True, before_response=True)
    if name == "commit-disconnect":
        return FaultAction(name, commit=True, drop=True, before_response=True)
    if name.startswith("commit-"):
        status = _status(name.removeprefix("commit-"), name)
        if status < 500:
            raise FaultError(f"{text!r}: commit-then-fail takes a 5xx status, got {status}")
        return FaultAction(name, status=status, commit=True)
    status = _status(name, name)
    if status == 202:
        return FaultAction(name, status=202, commit=True)
    if not 400 <= status <= 599:
        raise FaultError(f"{text!r}: a fault status is 202 or 400..599")
    return FaultAction(name, status=status)


def _status(digits: str, text: str) -> int:
    if not digits.isdigit() or len(digits) != 3:
        raise FaultError(f"{text!r} is not a fault action; use {ACTION_HELP}")
    return int(digits)


def _kind(kind: str) -> str:
    kind = str(kind).strip().lower()
    if kind != "any" and kind not in CALL_KINDS:
        raise FaultError(f"fault kind {kind!r} is not one of any, {', '.join(CALL_KINDS)}")
    return kind


@dataclass(frozen=True, slots=True)
class FaultRule:
    """``action`` for the next ``count`` calls of ``kind`` ("any" matches every call)."""

    kind: str
    action: FaultAction
    count: int = 1

    @classmethod
    def make(
        cls, kind: str, action: str, count: int = 1, *, delay: float = DEFAULT_DELAY
    ) -> FaultRule:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FaultError(f"count must be an integer >= 1, got {count!r}")
        return cls(_kind(kind), parse_action(action, delay=delay), count)

    def describe(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"kind": self.kind, "action": self.action.name}
        shown["count"] = self.count
        if self.action.delay:
            shown["delay"] = self.action.delay
        return shown


def parse_rule(text: str, *, delay: float = DEFAULT_DELAY) -> FaultRule:
    """``KIND:ACTION[:COUNT]`` as given to ``--fault``, e.g. ``create:commit-500:2``."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise FaultError(f"--fault {text!r}: expected KIND:ACTION[:COUNT], e.g. update:500:2")
    count_text = parts[2] if len(parts) == 3 else "1"
    if not count_text.isdigit():
        raise FaultError(f"--fault {text!r}: COUNT must be a positive integer")
    return FaultRule.make(parts[0], parts[1], int(count_text), delay=delay)


@dataclass(frozen=True, slots=True)
class RandomFaults:
    """Each call of one of ``kinds`` fails with probability ``rate`` (seeded, replayable)."""

    rate: float
    seed: int = 0
    actions: tuple[FaultAction, ...] = ()
    kinds: tuple[str, ...] = ("any",)

    @classmethod
    def make(
        cls,
        rate: float,
        *,
        seed: int = 0,
        actions: Iterable[str] = DEFAULT_RANDOM_ACTIONS,
        kinds: Iterable[str] = ("any",),
        delay: float = DEFAULT_DELAY,
    ) -> RandomFaults:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise FaultError(f"rate must be a number in [0, 1], got {rate!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FaultError(f"seed must be an integer, got {seed!r}")
        names = tuple(actions)
        if not names:
            raise FaultError("random faults need at least one action")
        parsed = tuple(parse_action(name, delay=delay) for name in names)
        return cls(float(rate), seed, parsed, tuple(_kind(k) for k in kinds) or ("any",))

    def describe(self) -> dict[str, Any]:
        delays = [a.delay for a in self.actions if a.delay]
        shown: dict[str, Any] = {
            "rate": self.rate,
            "seed": self.seed,
            "actions": [a.name for a in self.actions],
            "kinds": list(self.kinds),
        }
        if delays:
            shown["delay"] = delays[0]
        return shown


@dataclass(slots=True)
class _Pending:
    rule: FaultRule
    remaining: int


@dataclass(slots=True)
class FaultPlan:
    """The faults still to fire. Mutable: ``take`` consumes them."""

    rules: list[_Pending] = field(default_factory=list)
    random_faults: RandomFaults | None = None
    _rng: random.Random = field(default_factory=random.Random)
    fired: int = 0

    def add(self, rule: FaultRule) -> None:
        self.rules.append(_Pending(rule, rule.count))

    def set_random(self, faults: RandomFaults | None) -> None:
        self.random_faults = faults
        self._rng = random.Random(faults.seed if faults else 0)

    def clear(self) -> None:
        self.rules.clear()
        self.set_random(None)

    def take(self, kind: str) -> FaultAction | None:
        """The fault for this call of ``kind``, if any; scheduled rules before random ones."""
        if not self.rules and self.random_faults is None:
            return None
        for pending in self.rules:
            rule = pending.rule
            if rule.kind == "any" or rule.kind == kind:
                pending.remaining -= 1
                if pending.remaining <= 0:
                    self.rules.remove(pending)
                self.fired += 1
                return rule.action
        faults = self.random_faults
        if faults is not None and ("any" in faults.kinds or kind in faults.kinds):
            # Draw for every matching call so the sequence depends only on the seed.
            hit = self._rng.random() < faults.rate
            action = self._rng.choice(faults.actions)
            if hit:
                self.fired += 1
                return action
        return None

    def describe(self) -> dict[str, Any]:
        scheduled = []
        for pending in self.rules:
            shown = pending.rule.describe()
            shown["remaining"] = pending.remaining
            scheduled.append(shown)
        return {
            "scheduled": scheduled,
            "random": self.random_faults.describe() if self.random_faults else None,
            "fired": self.fired,
        }


def rule_from_json(data: Mapping[str, Any], *, default_delay: float) -> FaultRule | RandomFaults:
    """A rule (``{"kind", "action", "count", "delay"}``) or random faults (``{"random": {...}}``)
    from an admin API body."""
    if "random" in data:
        spec = data["random"]
        if not isinstance(spec, Mapping):
            raise FaultError("random: expected an object with rate, seed, actions, kinds, delay")
        unknown = set(spec) - {"rate", "seed", "actions", "kinds", "delay"}
        if unknown:
            raise FaultError(f"random: unknown field(s) {', '.join(sorted(unknown))}")
        if "rate" not in spec:
            raise FaultError("random.rate: is required (a number in [0, 1])")
        return RandomFaults.make(
            spec["rate"],
            seed=spec.get("seed", 0),
            actions=_names(spec.get("actions", DEFAULT_RANDOM_ACTIONS), "random.actions"),
            kinds=_names(spec.get("kinds", ("any",)), "random.kinds"),
            delay=_delay(spec.get("delay", default_delay)),
        )
    unknown = set(data) - {"kind", "action", "count", "delay"}
    if unknown:
        raise FaultError(
            f"unknown field(s) {', '.join(sorted(unknown))}; "
            "expected kind, action, count, delay (or random)"
        )
    if "action" not in data:
        raise FaultError(f"action: is required; use {ACTION_HELP}")
    return FaultRule.make(
        data.get("kind", "any"),
        data["action"],
        data.get("count", 1),
        delay=_delay(data.get("delay", default_delay)),
    )


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v for v in value.split(",") if v)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        return tuple(str(v) for v in value)
    raise FaultError(f"{where}: expected a list of names")


def _delay(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultError(f"delay must be a number of seconds >= 0, got {value!r}")
    return float(value)
