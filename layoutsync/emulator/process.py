"""``layoutsync emulator`` as a child process on a free loopback port (benchmarks, tests).

The child gets ``--port 0``, so the kernel picks a free port, and its banner
line ``listening on http://127.0.0.1:PORT`` says which; the context waits for
that line (bounded), yields, and stops the child (SIGTERM, then SIGKILL).
The child's environment holds no ``LAYOUTSYNC_*`` variable, so only the flags
configure it, and its output is read by a thread and kept (``output()``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RunningEmulator", "run_emulator"]

_BANNER = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class RunningEmulator:
    """A started emulator: its base URL, its process and what it printed."""

    def __init__(
        self, base_url: str, process: subprocess.Popen[str], lines: queue.Queue[str | None]
    ):
        self.base_url = base_url
        self.process = process
        self._lines = lines
        self._seen: list[str] = []
        self._ended = False

    def output(self, *, to_the_end: bool = False, timeout: float = 5.0) -> str:
        """What the child printed so far (stdout and stderr); ``to_the_end``: once it has
        exited, all of it (waits up to ``timeout`` for the last lines)."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Empty):
            while not self._ended:
                wait = max(0.0, deadline - time.monotonic()) if to_the_end else 0.0
                line = self._lines.get(timeout=wait) if wait else self._lines.get_nowait()
                if line is None:
                    self._ended = True
                else:
                    self._seen.append(line)
        return "".join(self._seen)


def _pump(stream: object, into: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        into.put(line)
    into.put(None)


@contextlib.contextmanager
def run_emulator(
    *flags: str, cwd: str | os.PathLike[str] | None = None, ready_timeout: float = 30.0
) -> Iterator[RunningEmulator]:
    """``layoutsync emulator --port 0 FLAGS...``; raises ``RuntimeError`` if it never listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYOUTSYNC_")}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "layoutsync", "emulator", "--port", "0", *flags]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=Path(cwd) if cwd is not None else None,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + ready_timeout
        base_url = None
        while base_url is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"the emulator did not listen within {ready_timeout:g} s:\n" + "".join(seen)
                ) from None
            if line is None:
                raise RuntimeError("the emulator exited early:\n" + "".join(seen))
            seen.append(line)
            found = _BANNER.search(line)
            if found:
                base_url = found.group(1)
        running = RunningEmulator(base_url, process, lines)
        running._seen.extend(seen)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
