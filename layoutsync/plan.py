"""The planner: what must be sent so the live transcoder equals the desired layout.

Pure: ``make_plan(desired_body, desired_hash, live)`` returns a frozen
``Plan`` and never performs I/O. Query does not echo the live config, so
"live" is what layoutsync knows: the task id, the last body the service
accepted (and its hash) and the last sequenceId sent.

How a plan is made:

1. Equal canonical hashes → ``noop``. No DeepDiff and no schema pass: the
   desired body was validated when it was compiled, the live one when it was
   applied.
2. Otherwise both bodies are normalised into trees whose lists are keyed by
   what identifies an item: inputs by ``rtcUid``, outputs by
   ``channel:uid``, watermarks by ``imageUrl``. A host leaving is then one
   removal, not a shift of every later list index. The trees are compared
   (how: below the table) and every changed path is classified with
   ``updatable``:

   ===========================================  =========
   path                                         verdict
   ===========================================  =========
   audioInputs / videoInputs members (+/-)      update
   a kept member's rtc.rtcToken                 update
   videoInputs[uid].region.*                    update
   outputs[key].audioOption / videoOption       update
   a kept member's rtc.rtcChannel, placeholder  replace
   canvas, waterMarks, idleTimeout, outputs'    replace
   rtc, the input channel, the scenario
   (audio-only <-> audio+video)
   ===========================================  =========

   Only updatable paths → ``update``; any other → ``replace`` (Delete, then
   Create), naming the paths that force it.

   The parts equal in both trees are pruned first (a C-speed ``==`` per
   member). A host joining or leaving, a layout shift or a token rotation
   then leaves only input members and output options that differ, and
   ``_plain_changes`` lists their changes with plain dict operations, exactly
   as DeepDiff would, some 15x faster. Any other difference (the canvas,
   watermarks, the scenario, a list or a float under a changed member) goes
   to DeepDiff; ``tests/test_plan.py`` checks on many pairs that both give
   the same plan.
3. No task and a body → ``create``. No body (no visible host) → the spec's
   ``onEmpty`` policy:

   - ``idle`` (the default): send nothing and let the service's idleTimeout
     end the task once the hosts have really left the channel. A host that
     drops for a moment (a network blip, a page reload) then costs nothing,
     where ``delete`` would cost a Delete now and an Acquire + Create a few
     seconds later, with a black output in between. The task cannot outlive
     its hosts by more than idleTimeout seconds, so idle is also cheap.
   - ``delete``: Delete now (for short idleTimeouts being too long for you, or
     billing that must stop the moment the last host leaves).

Secrets: every value a ``Plan`` shows (``changes``, ``render()``, ``as_dict()``)
goes through ``layoutsync.redact``; the body to send is kept out of ``repr``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson
from deepdiff import DeepDiff

from .redact import MASK, is_secret_key, redact

__all__ = [
    "ACTIONS",
    "Action",
    "Change",
    "HostChange",
    "Live",
    "Plan",
    "Region",
    "make_plan",
    "normalise",
    "path_text",
    "updatable",
]

Action = Literal["noop", "create", "update", "replace", "delete"]
OnEmpty = Literal["idle", "delete"]

#: Every action a plan can take, in the order a human reads them.
ACTIONS: tuple[Action, ...] = ("noop", "create", "update", "replace", "delete")

#: Which calls each action sends (Acquire is part of Create: a builderToken is
#: acquired just before it, never ahead of time).
CALLS: Mapping[Action, tuple[str, ...]] = {
    "noop": (),
    "create": ("acquire", "create"),
    "update": ("update",),
    "replace": ("delete", "acquire", "create"),
    "delete": ("delete",),
}

Path = tuple[str | int, ...]


class Change(NamedTuple):
    """One difference, kopf-style: ``(op, path, old, new)`` with secrets already redacted.

    ``op`` is ``"add"``, ``"remove"`` or ``"change"``; ``path`` runs through
    the normalised tree (``("videoInputs", 101, "region", "x")``).
    """

    op: Literal["add", "remove", "change"]
    path: Path
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Region:
    """A video input's place on the canvas, in px (``zOrder`` 0 is the bottom layer)."""

    x: int
    y: int
    width: int
    height: int
    z_order: int

    @classmethod
    def of(cls, region: Mapping[str, Any]) -> Region:
        return cls(region["x"], region["y"], region["width"], region["height"], region["zOrder"])

    def __str__(self) -> str:
        return f"{self.width}x{self.height} at ({self.x},{self.y}) z={self.z_order}"

    def as_dict(self) -> dict[str, int]:
        return {
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "zOrder": self.z_order,
        }


@dataclass(frozen=True, slots=True)
class HostChange:
    """What happens to one host: ``kind`` is one of

    ``added`` / ``removed`` (subscribed or unsubscribed altogether), ``shown`` /
    ``hidden`` (video placed or dropped while its audio stays, e.g. overflow),
    ``audio-added`` / ``audio-removed``, or the region changes joined by ``+``:
    ``moved`` (x, y), ``resized`` (width, height), ``restacked`` (zOrder).
    """

    uid: int
    kind: str
    old: Region | None = None
    new: Region | None = None
    old_audio: bool = False
    new_audio: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "kind": self.kind,
            "old": self.old.as_dict() if self.old else None,
            "new": self.new.as_dict() if self.new else None,
            "audio": [self.old_audio, self.new_audio],
        }


@dataclass(frozen=True, slots=True)
class Live:
    """What layoutsync knows of the live task (Query does not return its config).

    ``sequence_id`` is the last sequenceId *sent* to the task (None: no Update
    yet, so the next one is 0). ``uncertain`` says an Update may or may not
    have been applied (its outcome was lost): ``body`` is then the body of that
    Update, and the plan re-sends the desired config even when it equals it.
    """

    task_id: str | None = None
    body: Mapping[str, Any] | None = field(default=None, repr=False)
    body_hash: str | None = None
    sequence_id: int | None = None
    uncertain: bool = False
    instance_id: str | None = None

    @property
    def next_sequence_id(self) -> int:
        return 0 if self.sequence_id is None else self.sequence_id + 1


@dataclass(frozen=True, slots=True)
class Plan:
    """What a reconcile will send, and why. Frozen; render with ``render()`` or ``as_dict()``.

    ``next_sequence_id`` is the sequenceId this plan's Update carries (None when
    the plan sends no Update: a new task's first Update will use 0).
    ``replace_paths`` are the changed paths that cannot be updated in place.
    ``body`` (never in ``repr``) is the desired request body to send.
    """

    action: Action
    reasons: tuple[str, ...]
    instance_id: str
    task_id: str | None = None
    hosts: tuple[HostChange, ...] = ()
    changes: tuple[Change, ...] = ()
    replace_paths: tuple[str, ...] = ()
    next_sequence_id: int | None = None
    body: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    body_hash: str | None = None

    @property
    def changed(self) -> bool:
        return self.action != "noop"

    @property
    def calls(self) -> tuple[str, ...]:
        """The calls this plan will send, in order (Acquire comes with every Create)."""
        return CALLS[self.action]

    def summary(self) -> str:
        """One line: ``update (sequenceId 3): 1 host added, 1 moved``."""
        if self.action == "noop":
            return "no changes"
        head: str = self.action
        if self.next_sequence_id is not None:
            head += f" (sequenceId {self.next_sequence_id})"
        counts: dict[str, int] = {}
        for host in self.hosts:
            counts[host.kind] = counts.get(host.kind, 0) + 1
        parts = [f"{n} host{'s' if n != 1 else ''} {kind}" for kind, n in counts.items()]
        if self.replace_paths:
            parts.append(f"{len(self.replace_paths)} change(s) forcing replacement")
        elif self.action == "update":
            other = sum(1 for c in self.changes if not _shown_by_host_lines(c))
            if other:
                parts.append(f"{other} other change(s)")
        return f"{head}: {', '.join(parts)}" if parts else head

    def render(self) -> str:
        """Terraform-like text: ``+`` add, ``-`` remove, ``~`` change; tokens shown as ***."""
        return "\n".join(_render_lines(self))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``layoutsync plan --json``), secrets redacted."""
        forcing = set(self.replace_paths)
        return {
            "action": self.action,
            "instance_id": self.instance_id,
            "task_id": self.task_id,
            "reasons": list(self.reasons),
            "calls": list(self.calls),
            "next_sequence_id": self.next_sequence_id,
            "body_hash": self.body_hash,
            "hosts": [host.as_dict() for host in self.hosts],
            "changes": [
                {
                    "op": change.op,
                    "path": path_text(change.path),
                    "old": change.old,
                    "new": change.new,
                    "forces_replacement": path_text(change.path) in forcing,
                }
                for change in self.changes
            ],
            "replace_paths": list(self.replace_paths),
        }


# --- normalisation ------------------------------------------------------------------------------


def normalise(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as a tree keyed by stable identities instead of list indexes.

    Inputs are keyed by ``rtcUid``, outputs by ``"channel:uid"``, watermarks
    by ``imageUrl`` (``"url#2"`` for a repeat). Two synthetic keys make the
    two whole-config facts explicit: ``inputChannel`` and ``scenario``
    (``audio+video`` or ``audio-only``), both of which force a replacement.
    """
    cloud = body["services"]["cloudTranscoder"]
    transcoder = cloud["config"]["transcoder"]
    tree: dict[str, Any] = {
        "serviceType": cloud.get("serviceType"),
        "scenario": "audio+video" if "videoInputs" in transcoder else "audio-only",
    }
    channel = None
    for key, value in transcoder.items():
        if key in ("audioInputs", "videoInputs"):
            members = {item["rtc"]["rtcUid"]: item for item in value}
            tree[key] = members
            for item in value:
                channel = channel or item["rtc"].get("rtcChannel")
        elif key == "outputs":
            tree[key] = {f"{o['rtc']['rtcChannel']}:{o['rtc']['rtcUid']}": o for o in value}
        elif key == "waterMarks":
            marks: dict[str, Any] = {}
            for mark in value:
                name = mark.get("imageUrl", "")
                seen = sum(1 for k in marks if k == name or k.startswith(f"{name}#"))
                marks[name if not seen else f"{name}#{seen + 1}"] = mark
            tree[key] = marks
        else:
            tree[key] = value
    tree["inputChannel"] = channel
    return tree


def updatable(path: Path) -> bool:
    """True when a change at ``path`` (in the normalised tree) can be sent by Update.

    The vendor's list: the rtc members of audio/videoInputs (a kept member's
    token included), videoInputs' regions, outputs' audioOption/videoOption.
    Everything else must be sent unchanged, so a change there forces a
    replacement. ``audioInputs`` appearing or disappearing as a whole is a
    change of its member set; ``videoInputs`` or an output's ``videoOption``
    doing so changes the scenario chosen at Create.
    """
    head = path[0]
    if head == "audioInputs":
        return len(path) <= 2 or path[2:] == ("rtc", "rtcToken")
    if head == "videoInputs":
        if len(path) == 1:
            return False
        return len(path) == 2 or path[2] == "region" or path[2:] == ("rtc", "rtcToken")
    if head == "outputs":
        # videoOption appearing or disappearing switches the scenario: not an update.
        return len(path) >= 3 and (
            path[2] == "audioOption" or (path[2] == "videoOption" and len(path) >= 4)
        )
    return False


# --- planning -----------------------------------------------------------------------------------


def make_plan(
    desired_body: Mapping[str, Any] | None,
    desired_hash: str | None,
    live: Live,
    *,
    instance_id: str,
    on_empty: OnEmpty = "idle",
) -> Plan:
    """The plan that makes ``live`` equal ``desired_body`` (None: no visible host)."""

    def made(
        action: Action,
        reason: str,
        old: Mapping[str, Any] | None = None,
        new: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Plan:
        """A plan; its host lines compare the trees ``old`` and ``new`` (default: desired)."""
        if action != "noop":
            if new is None:
                new = normalise(desired_body) if desired_body is not None else {}
            fields["hosts"] = _host_changes(old or {}, new)
        if action in ("create", "update", "replace"):
            fields.update(body=desired_body, body_hash=desired_hash)
        if action == "update":
            fields["next_sequence_id"] = live.next_sequence_id
        return Plan(action, (reason,), instance_id=instance_id, task_id=live.task_id, **fields)

    if desired_body is None:
        if live.task_id is None:
            return made("noop", "no visible host and no task: nothing to create")
        if on_empty == "idle":
            return made(
                "noop",
                "no visible host; onEmpty=idle: nothing is sent, the service's idleTimeout "
                "ends the task once the hosts have left the channel",
            )
        old = normalise(live.body) if live.body is not None else {}
        return made(
            "delete",
            "no visible host; onEmpty=delete: Delete the task now",
            old,
            changes=_whole_changes(old, "remove"),
        )
    if live.task_id is None:
        new = normalise(desired_body)
        return made(
            "create",
            "no task for this instanceId: Acquire a builderToken, then Create",
            new=new,
            changes=_whole_changes(new, "add"),
        )
    if live.instance_id is not None and live.instance_id != instance_id:
        return made(
            "replace",
            f"instanceId changed from {live.instance_id!r} to {instance_id!r}: "
            "a task belongs to one instanceId",
            normalise(live.body) if live.body is not None else {},
            changes=(Change("change", ("instanceId",), live.instance_id, instance_id),),
            replace_paths=("instanceId",),
        )
    if desired_hash is not None and desired_hash == live.body_hash and not live.uncertain:
        return made("noop", "the desired config equals the applied one")
    if live.body is None:
        new = normalise(desired_body)
        return made(
            "update",
            "the live config is unknown: send the full desired config",
            new=new,
            changes=_whole_changes(new, "add"),
        )

    old, new = normalise(live.body), normalise(desired_body)
    changes = _diff(old, new)
    forcing = tuple(dict.fromkeys(path_text(c.path) for c in changes if not updatable(c.path)))
    if forcing:
        return made(
            "replace",
            f"{', '.join(forcing)} cannot be updated in place: Delete, then Create",
            old,
            new,
            changes=changes,
            replace_paths=forcing,
        )
    if changes:
        reason = "hosts or regions changed: one Update with the full config"
    elif live.uncertain:
        reason = (
            f"the outcome of Update sequenceId {live.sequence_id} is unknown: "
            "re-send the desired config with a higher sequenceId"
        )
    else:
        # Canonical bodies differ but no tree path does (only list order moved):
        # still one Update, so what is live equals what is recorded.
        reason = "the config changed only in list order: one Update with the full config"
    return made("update", reason, old, new, changes=changes)


_KEYED = ("audioInputs", "videoInputs", "outputs", "waterMarks")


def _prune(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both trees without the parts that are equal in both (a C-speed ``==`` each).

    DeepDiff walks every node it is given, slowly; a host joining leaves the
    other fifteen members equal, so only what differs is handed to it. The paths
    it reports are unchanged, since every kept key keeps its place.
    """
    pruned_old: dict[str, Any] = {}
    pruned_new: dict[str, Any] = {}
    for key in old.keys() | new.keys():
        was, now = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if was == now:
            continue
        if key in _KEYED and isinstance(was, dict) and isinstance(now, dict):
            members = [
                m for m in was.keys() | now.keys() if was.get(m, _ABSENT) != now.get(m, _ABSENT)
            ]
            was = {m: was[m] for m in members if m in was}
            now = {m: now[m] for m in members if m in now}
        if was is not _ABSENT:
            pruned_old[key] = was
        if now is not _ABSENT:
            pruned_new[key] = now
    return pruned_old, pruned_new


_ABSENT: Any = object()


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Change, ...]:
    """Every change from ``old`` to ``new``, ordered by path (ints before strings at each step)."""
    pruned_old, pruned_new = _prune(old, new)
    found = _plain_changes(pruned_old, pruned_new)
    if found is None:
        found = _deepdiff_changes(pruned_old, pruned_new)
    found.sort(key=_path_order)
    return tuple(found)


def _path_order(change: Change) -> tuple[tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in change.path)


def _deepdiff_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    # threshold_to_diff_deeper=0: however few keys two maps share, report item
    # additions/removals, never "the whole map changed" (a full host swap is an update).
    tree = DeepDiff(old, new, view="tree", threshold_to_diff_deeper=0)
    found: list[Change] = []
    for report, levels in tree.items():
        op: Literal["add", "remove", "change"]
        if report.endswith("_added"):
            op = "add"
        elif report.endswith("_removed"):
            op = "remove"
        else:
            op = "change"
        for level in levels:
            path: Path = tuple(level.path(output_format="list"))
            found.append(
                Change(
                    op,
                    path,
                    None if op == "add" else _shown(path, level.t1),
                    None if op == "remove" else _shown(path, level.t2),
                )
            )
    return found


#: Top-level keys whose (pruned) differences ``_plain_changes`` lists itself.
_PLAIN_HEADS = frozenset({"audioInputs", "videoInputs", "outputs"})
#: Value types compared in place of DeepDiff: JSON's, minus lists (DeepDiff walks them by
#: index) and floats (its number rules are its own). Exact types: a subclass goes to DeepDiff.
_PLAIN_TYPES = frozenset({dict, str, int, bool, type(None)})
_KEY_TYPES = frozenset({str, int})


def _plain_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change] | None:
    """DeepDiff's report on two pruned trees, by plain dict operations; None: ask DeepDiff.

    Only for the common shapes: the trees differ under the keyed input and
    output maps, both present on each side, and every pair of values compared
    is a dict or an exact ``str``/``int``/``bool``/``None``. The rules are
    DeepDiff's (``threshold_to_diff_deeper=0``): a key on one side only is an
    ``add``/``remove`` of its whole value; values of different types are a
    ``change`` even when ``==`` (``1`` and ``True``); dicts are compared key
    by key. DeepDiff skips ``__``-prefixed keys; such a key hands over to it.
    """
    heads = old.keys() | new.keys()
    if not heads <= _PLAIN_HEADS:
        return None
    found: list[Change] = []
    for head in heads:
        was, now = old.get(head), new.get(head)
        if type(was) is not dict or type(now) is not dict:
            return None  # a whole keyed map appears or disappears
        if not _plain_walk(was, now, (head,), found):
            return None
    return found


def _plain_walk(was: dict[Any, Any], now: dict[Any, Any], at: Path, found: list[Change]) -> bool:
    """Append the changes from ``was`` to ``now`` under ``at``; False: not a plain case."""
    for key in was.keys() | now.keys():
        if type(key) not in _KEY_TYPES or (type(key) is str and key.startswith("__")):
            return False
        path = (*at, key)
        if key not in now:
            found.append(Change("remove", path, _shown(path, was[key]), None))
            continue
        if key not in was:
            found.append(Change("add", path, None, _shown(path, now[key])))
            continue
        a, b = was[key], now[key]
        if a is b:
            continue
        kind_a, kind_b = type(a), type(b)
        if kind_a not in _PLAIN_TYPES or kind_b not in _PLAIN_TYPES:
            return False
        if kind_a is dict and kind_b is dict:
            if not _plain_walk(a, b, path, found):
                return False
        elif kind_a is not kind_b or a != b:
            found.append(Change("change", path, _shown(path, a), _shown(path, b)))
    return True


def _whole_changes(tree: Mapping[str, Any], op: Literal["add", "remove"]) -> tuple[Change, ...]:
    """Create/Delete: one change per top-level item (each input member on its own)."""
    out: list[Change] = []
    for key, value in tree.items():
        if key in ("audioInputs", "videoInputs", "outputs", "waterMarks"):
            items: Iterable[tuple[Path, Any]] = (((key, k), v) for k, v in value.items())
        else:
            items = [((key,), value)]
        for path, item in items:
            shown = _shown(path, item)
            out.append(
                Change(op, path, None if op == "add" else shown, shown if op == "add" else None)
            )
    return tuple(out)


def _shown(path: Path, value: Any) -> Any:
    if path and is_secret_key(path[-1]) and value is not None:
        return MASK
    return _redacted(value)


_SCALARS = frozenset({str, int, bool, float, type(None)})


def _redacted(value: Any) -> Any:
    """``redact(value)``, with the JSON shapes of a body walked without ``isinstance`` checks."""
    kind = type(value)
    if kind is dict:
        return {
            key: MASK if item is not None and _secret_key(key) else _redacted(item)
            for key, item in value.items()
        }
    if kind in _SCALARS:
        return value
    return redact(value)


@functools.lru_cache(maxsize=256, typed=True)
def _secret_key(key: Any) -> bool:
    """``is_secret_key``, remembered: a body repeats a handful of keys."""
    return is_secret_key(key)


def _host_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[HostChange, ...]:
    old_video, new_video = old.get("videoInputs", {}), new.get("videoInputs", {})
    old_audio, new_audio = _audio(old, old_video), _audio(new, new_video)
    uids = sorted((old_video.keys() | new_video.keys() | old_audio | new_audio) - {0})
    changes: list[HostChange] = []
    for uid in uids:
        was_item, is_item = old_video.get(uid), new_video.get(uid)
        was_a, is_a = uid in old_audio, uid in new_audio
        if (
            was_a == is_a
            and was_item is not None
            and is_item is not None
            and (was_item is is_item or was_item["region"] == is_item["region"])
        ):
            continue  # same place, same audio: nothing to say about this host
        was_v = Region.of(was_item["region"]) if was_item is not None else None
        is_v = Region.of(is_item["region"]) if is_item is not None else None
        kind = _host_kind(was_v, is_v, was_a, is_a)
        if kind:
            changes.append(HostChange(uid, kind, was_v, is_v, was_a, is_a))
    return tuple(changes)


def _host_kind(was_v: Region | None, is_v: Region | None, was_a: bool, is_a: bool) -> str:
    had, has = was_v is not None or was_a, is_v is not None or is_a
    if not had:
        return "added"
    if not has:
        return "removed"
    if was_v is None and is_v is not None:
        return "shown"
    if was_v is not None and is_v is None:
        return "hidden"
    if was_v is not None and is_v is not None and was_v != is_v:
        parts = []
        if (was_v.x, was_v.y) != (is_v.x, is_v.y):
            parts.append("moved")
        if (was_v.width, was_v.height) != (is_v.width, is_v.height):
            parts.append("resized")
        if was_v.z_order != is_v.z_order:
            parts.append("restacked")
        return "+".join(parts)
    if was_a != is_a:
        return "audio-added" if is_a else "audio-removed"
    return ""


def _audio(tree: Mapping[str, Any], video: Mapping[int, Any]) -> set[int]:
    """Whose audio is mixed: audioInputs when given, else the video inputs' (vendor default)."""
    if "audioInputs" in tree:
        return set(tree["audioInputs"])
    return set(video)


def _shown_by_host_lines(change: Change) -> bool:
    """Member additions/removals and region changes: the per-host lines already say them."""
    path = change.path
    if path[0] not in ("audioInputs", "videoInputs") or len(path) < 2:
        return False
    return len(path) == 2 or path[2] == "region"


def path_text(path: Path) -> str:
    """``("videoInputs", 101, "region", "x")`` → ``"videoInputs/101/region/x"``."""
    return "/".join(str(part) for part in path)


# --- human rendering ----------------------------------------------------------------------------

_HEADS: Mapping[Action, str] = {
    "noop": "is up to date",
    "create": "will be created (Acquire, Create)",
    "update": "will be updated in place (Update)",
    "replace": "must be replaced (Delete, then Acquire and Create)",
    "delete": "will be deleted (Delete)",
}

_SIGN = {"add": "+", "remove": "-", "change": "~"}


def _render_lines(plan: Plan) -> Iterator[str]:
    task = f" (task {plan.task_id})" if plan.task_id else ""
    if plan.action == "noop":
        yield f"No changes. Transcoder {plan.instance_id!r}{task} {_HEADS['noop']}."
        for reason in plan.reasons:
            yield f"  ({reason})"
        return
    head = _HEADS[plan.action]
    if plan.next_sequence_id is not None:
        head = head[:-1] + f", sequenceId {plan.next_sequence_id})"
    yield f"  # transcoder {plan.instance_id!r}{task} {head}"
    for reason in plan.reasons:
        yield f"  # {reason}"
    for host in plan.hosts:
        yield "  " + _host_line(host)
    forcing = set(plan.replace_paths)
    for change in plan.changes:
        if _shown_by_host_lines(change) and path_text(change.path) not in forcing:
            continue
        yield "  " + _change_line(change, path_text(change.path) in forcing)
    yield ""
    yield f"Plan: {plan.summary()}."


def _host_line(host: HostChange) -> str:
    media = _media(host.new_audio if host.kind != "removed" else host.old_audio)
    if host.kind == "added":
        where = f"video {host.new}" if host.new else "audio only"
        return f"+ host {host.uid}: {where}{media if host.new else ''}"
    if host.kind == "removed":
        where = f"video {host.old}" if host.old else "audio only"
        return f"- host {host.uid}: {where}"
    if host.kind == "hidden":
        return f"~ host {host.uid}: hidden (audio only), was video {host.old}"
    if host.kind == "shown":
        return f"~ host {host.uid}: shown, video {host.new}"
    if host.kind in ("audio-added", "audio-removed"):
        return f"~ host {host.uid}: {host.kind}"
    return f"~ host {host.uid}: {host.kind}: {host.old} -> {host.new}"


def _media(audio: bool) -> str:
    return " + audio" if audio else ""


def _change_line(change: Change, forces: bool) -> str:
    text = path_text(change.path)
    suffix = "  # forces replacement" if forces else ""
    sign = _SIGN[change.op]
    if change.op == "add":
        return f"{sign} {text}: {_value(change.new)}{suffix}"
    if change.op == "remove":
        return f"{sign} {text}: {_value(change.old)}{suffix}"
    if change.old == MASK and change.new == MASK:
        return f"{sign} {text}: (sensitive value){suffix}"
    return f"{sign} {text}: {_value(change.old)} -> {_value(change.new)}{suffix}"


def _value(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
        return text if len(text) <= 120 else text[:117] + "..."
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
