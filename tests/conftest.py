from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from _sessionkit import Emulated


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()


# --- no rtcToken at rest ------------------------------------------------------------------------

#: The rtcTokens the suite's specs and bodies use (literal and ``env:``-resolved).
TEST_RTC_TOKENS = (
    "input-SECRET-token-0001",  # _sessionkit
    "output-SECRET-token-0002",
    "007eJxE2EINPUT",  # test_daemon_e2e
    "007eJxE2EOUTPUT",
    "007eJxINPUTTOKEN",  # test_daemon_app
    "007eJxOUTPUTTOKEN",
    "crash-suite-IN-rtc-token-7f3a",  # test_daemon_crash
    "crash-suite-OUT-rtc-token-91cd",
    "demo-input-token",  # examples/
    "demo-output-token",
    "rtc-SECRET",  # test_store
)

_SQLITE_MAGIC = b"SQLite format 3\x00"


def state_files(root: Path) -> list[Path]:
    """Every SQLite file under ``root``, with its -wal/-journal companions."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if path.name.endswith(("-wal", "-journal", "-shm")):
            found.append(path)
            continue
        try:
            with path.open("rb") as handle:
                if handle.read(16) == _SQLITE_MAGIC:
                    found.append(path)
        except FileNotFoundError:  # a -wal removed as its connection closed: nothing at rest
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def _no_rtc_token_in_any_state_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run: no state file the suite produced holds a test rtcToken.

    Tests make their state files under ``tmp_path`` (the session's base temp), so
    this sees every one, WAL files and free pages included (a byte scan).
    """
    yield
    root = tmp_path_factory.getbasetemp()
    leaks = []
    scanned = state_files(root)
    for path in scanned:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # removed since it was listed (a WAL checkpointed on close)
            continue
        leaks += [f"{path}: {token}" for token in TEST_RTC_TOKENS if token.encode() in data]
    assert not leaks, "rtcTokens at rest:\n" + "\n".join(leaks)


@pytest.fixture
def emulated() -> Iterator[Emulated]:
    """An in-process emulator and its clients (``_sessionkit.Emulated``), closed after the test."""
    emulated = Emulated()
    yield emulated
    emulated.close()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server on a free loopback port (skipped, saying what to install, without)."""
    from _redis import RedisServer, redis_server_binary

    redis_server_binary()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
