"""``layoutsync demo``: a live show against the embedded emulator, with SQLite state.

Hosts join, speak, drop out and come back; after every event the session
reconciles and the demo prints the plan, the calls sent, and checks that the
emulator's live config is exactly the desired body. Nothing leaves the process:
the emulator runs in-process behind ``SyncASGITransport``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api.client import Client, RetryPolicy
from ..apply import ReconcileResult, Session
from ..emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    EmulatorConfig,
    SyncASGITransport,
    create_app,
)
from ..emulator.state import Emulator
from ..logs import configure
from ..preview import picture_of_plan
from ..redact import redact
from ..spec import LayoutSpec, load_spec
from ..store import SqliteStore

#: The show's spec: a 1280x720 grid of at most 9 tiles; the 10th host is heard, not seen.
DEMO_SPEC: dict[str, Any] = {
    "instanceId": "layoutsync-demo",
    "input": {"channel": "demo-room", "token": "demo-input-token"},
    "output": {
        "channel": "demo-room-live",
        "uid": 9000,
        "token": "demo-output-token",
        "video": {"width": 1280, "height": 720, "fps": 15, "codec": "H264", "bitrate": 1500},
    },
    "canvas": {"color": "#101010"},
    "placeholderImage": "https://cdn.example.com/offline.png",
    "watermarks": [
        {
            "imageUrl": "https://cdn.example.com/logo.png",
            "x": 1144,
            "y": 16,
            "width": 120,
            "height": 120,
            "zOrder": 90,
        }
    ],
    "idleTimeout": 60,
    "layout": {
        "template": "grid",
        "gap": 8,
        "padding": 16,
        "aspect": "16:9",
        "maxTiles": 9,
        "overflow": "audio-only",
        "stability": "stable",
    },
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a show against the embedded emulator (no network, no credentials)",
        description="Hosts join and leave a grid layout; every event is planned, applied to "
        "an in-process emulator of the Cloud Transcoder, and checked against it.",
    )
    parser.add_argument(
        "--spec",
        metavar="SPEC",
        help="a grid/speaker/floating spec to run the show with (default: a built-in grid)",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="SQLite state file (default: a new file in a temporary directory)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the one-line results")
    parser.add_argument(
        "--pictures",
        metavar="DIR",
        help="write a before -> after picture of every step into DIR "
        "(default: a new temporary directory, named at the end)",
    )
    parser.set_defaults(handler=run)


@dataclasses.dataclass(frozen=True, slots=True)
class Scene:
    title: str
    act: Callable[[Session, Emulator, LayoutSpec], LayoutSpec | None]


def _join(*uids: int) -> Callable[[Session, Emulator, LayoutSpec], None]:
    def act(session: Session, emulator: Emulator, spec: LayoutSpec) -> None:
        for uid in uids:
            emulator.set_present(spec.input_channel, uid, True)
            session.host_joined(uid)

    return act


def _leave(*uids: int) -> Callable[[Session, Emulator, LayoutSpec], None]:
    def act(session: Session, emulator: Emulator, spec: LayoutSpec) -> None:
        for uid in uids:
            emulator.set_present(spec.input_channel, uid, False)
            session.host_left(uid)

    return act


def _nothing(session: Session, emulator: Emulator, spec: LayoutSpec) -> None:
    session.set_hosts(session.hosts)


def _recolour(session: Session, emulator: Emulator, spec: LayoutSpec) -> LayoutSpec:
    raw = dict(spec.raw)
    raw["canvas"] = {**raw.get("canvas", {}), "color": "#203040"}
    changed = load_spec(raw)
    session.replace_spec(changed)
    return changed


def _idle_out(session: Session, emulator: Emulator, spec: LayoutSpec) -> None:
    emulator.advance_clock(spec.idle_timeout + 5)
    found = session.refresh()
    verdict = "gone (404 confirmed by Query after back-off)" if found is None else "still live"
    print(f"    refresh: the task is {verdict}")


SCENES = (
    Scene("101 goes live", _join(101)),
    Scene("102 and 103 join", _join(102, 103)),
    Scene("nothing changed (no request at all)", _nothing),
    Scene("a burst: 104..110 join between two reconciles", _join(*range(104, 111))),
    Scene("103 drops out (stable: one host moves into its slot)", _leave(103)),
    Scene("103 comes back", _join(103)),
    Scene("the canvas colour changes (cannot be updated in place)", _recolour),
    Scene("everyone leaves (onEmpty=idle: nothing is sent)", _leave(*range(101, 111))),
    Scene("the service ends the idle task after idleTimeout", _idle_out),
    Scene("101 returns", _join(101)),
)


def run(args: argparse.Namespace) -> int:
    configure(level="warning")
    spec = load_spec(args.spec if args.spec else DEMO_SPEC)
    with tempfile.TemporaryDirectory(prefix="layoutsync-demo-") as scratch:
        state_path = Path(args.state) if args.state else Path(scratch) / "layoutsync.db"
        pictures = Path(args.pictures) if args.pictures else None
        return _show(spec, state_path, quiet=args.quiet, pictures=pictures)


def _show(spec: LayoutSpec, state_path: Path, *, quiet: bool, pictures: Path | None = None) -> int:
    if pictures is None:
        pictures = Path(tempfile.mkdtemp(prefix="layoutsync-demo-pictures-"))
    pictures.mkdir(parents=True, exist_ok=True)
    app = create_app(EmulatorConfig())
    emulator: Emulator = app.state.emulator
    store = SqliteStore(str(state_path))
    failures = 0
    with (
        SyncASGITransport(app) as transport,
        Client(
            base_url="http://emulator.invalid",
            app_id=DEFAULT_APP_ID,
            customer_key=DEFAULT_CUSTOMER_KEY,
            customer_secret=DEFAULT_CUSTOMER_SECRET,
            transport=transport,
            # The vendor's 5/10/15 s back-off, scaled down so the show does not stall.
            retry=RetryPolicy(delays=(0.05, 0.1, 0.15)),
        ) as client,
    ):
        session = Session(spec, client=client, store=store, name="demo")
        print(f"layoutsync demo: {spec.instance_id!r} on the embedded emulator, state {state_path}")
        for number, scene in enumerate(SCENES, start=1):
            print(f"\n[{number}] {scene.title}")
            before = len(emulator.requests())
            changed_spec = scene.act(session, emulator, spec)
            spec = changed_spec or spec
            plan = session.plan()
            if not quiet and plan.changed:
                print(_indent(plan.render()))
            picture_of_plan(session, plan).save(pictures / f"{number:02d}-{_slug(scene.title)}.png")
            result = session.reconcile()
            sent = [entry["kind"] for entry in emulator.requests()[before:]]
            print(f"    {_result_line(result, sent)}")
            problem = _check(session, emulator)
            if problem:
                failures += 1
                print(f"    MISMATCH: {problem}")
        print()
        print(_summary(emulator, failures))
        print(f"pictures of every step (before -> after): {pictures}")
    store.close()
    return 1 if failures else 0


def _result_line(result: ReconcileResult, sent: list[str]) -> str:
    calls = ", ".join(sent) if sent else "no request"
    task = f" task {result.task_id[:8]}" if result.task_id else ""
    seq = f" sequenceId {result.sequence_id}" if result.sequence_id is not None else ""
    error = f"  error: {result.error}" if result.error else ""
    return f"{result.action}: {calls}{task}{seq}{error}"


def _check(session: Session, emulator: Emulator) -> str | None:
    """The emulator's live config must equal the desired body (tokens masked on both sides)."""
    status = session.status()
    compiled = session.compiled
    live = [t for t in emulator.tasks() if t["instanceId"] == status.instance_id]
    if compiled is None or compiled.body is None:
        return None  # nobody to show: onEmpty=idle leaves the task to its idleTimeout
    if len(live) != 1:
        return f"expected one live task, the emulator has {len(live)}"
    desired = redact(compiled.body)["services"]["cloudTranscoder"]["config"]
    if live[0]["config"] != desired:
        return "the live config differs from the desired body"
    return None


def _summary(emulator: Emulator, failures: int) -> str:
    counts = Counter(entry["kind"] for entry in emulator.requests())
    calls = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    verdict = (
        "live config matched the desired layout after every event"
        if not failures
        else (f"{failures} event(s) left the live config different from the desired layout")
    )
    return f"requests sent: {calls}\n{verdict}"


def _slug(title: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in title.lower()).split()
    return "-".join(words[:6])


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
