"""What the CLI shows while the library waits: one line per wait, a spinner on a terminal.

The library never prints: the client and the session report each wait as a
``WaitEvent`` through their ``on_wait`` hooks, and this module turns them into
output. Every wait prints one line on stderr as it begins (unless ``--quiet``);
on a terminal (stderr is a TTY, and neither ``--quiet`` nor ``--json``) a rich
spinner runs while a verb talks to the service and counts each wait down.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from ..api.models import WaitEvent
from ..store import Intent, SessionState

__all__ = ["Progress", "add_quiet", "resume_note"]


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only the one-line summary: no plan, no wait lines, no spinner (default: off)",
    )


class Progress:
    """Wait lines and a spinner for one verb; ``on_wait`` and ``sleep`` go to the library."""

    def __init__(
        self, verb: str, *, quiet: bool = False, spinner: bool = True, stream: IO[str] | None = None
    ) -> None:
        self.verb = verb
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self._console: Any = None
        self._status: Any = None
        self._text = ""
        if spinner and not quiet and _isatty(self.stream):
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def on_wait(self, event: WaitEvent) -> None:
        """Print one line as a wait begins: why, what follows, which of how many."""
        if self.quiet:
            return
        line = f"{self.verb}: {event}"
        if self._console is not None:
            self._console.print(line, markup=False)
        else:
            print(line, file=self.stream, flush=True)

    def sleep(self, seconds: float) -> None:
        """Sleep, counting down on the spinner when there is one."""
        status = self._status
        if status is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                status.update(f"{self.verb}: waiting, {math.ceil(left)} s left")
                time.sleep(min(0.1, left))
        finally:
            status.update(self._text)

    @contextlib.contextmanager
    def working(self, text: str) -> Iterator[None]:
        """A spinner with ``text`` while the block runs (on a terminal only)."""
        if self._console is None:
            yield
            return
        self._text = f"{self.verb}: {text}"
        with self._console.status(self._text, spinner="dots") as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def resume_note(state: SessionState | None, command: str) -> str:
    """What the next run of ``command`` picks up, from the state row as it was left."""
    intent: Intent | None = state.intent if state is not None else None
    if intent is None:
        return f"nothing was left half done; `{command}` starts from the state file as it is"
    if intent.call == "acquire":
        return (
            "an Acquire was under way; its builderToken was never stored or used, so "
            f"`{command}` starts the Create over"
        )
    if intent.call == "create":
        return (
            "a Create whose answer was not recorded: "
            f"`{command}` sends it again with the same builderToken, which makes at most one task"
        )
    if intent.call == "update":
        return (
            f"the Update with sequenceId {intent.sequence_id} may or may not have been applied: "
            f"`{command}` sends the desired config again under the next sequenceId"
        )
    return (
        f"the Delete of task {intent.task_id} may or may not have been applied: `{command}` "
        "sends it again (a 404 then means it took effect)"
    )
