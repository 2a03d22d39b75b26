"""``layoutsync demo``: the README's first command runs a whole show and checks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from layoutsync.cli import main
from layoutsync.store import SqliteStore


def test_the_show_converges_after_every_event(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "demo.db"
    pictures = tmp_path / "pictures"
    assert main(["demo", "--state", str(state), "--pictures", str(pictures)]) == 0
    out = capsys.readouterr().out
    # A picture of every step, in order, in the folder the show names at the end.
    drawn = sorted(path.name for path in pictures.glob("*.png"))
    assert len(drawn) == 10 and drawn[0] == "01-101-goes-live.png", drawn
    assert f"pictures of every step (before -> after): {pictures}" in out
    assert "MISMATCH" not in out
    assert "live config matched the desired layout after every event" in out
    # One Create, then Updates; the unchanged event sends nothing; a canvas change replaces.
    assert "create: acquire, create" in out
    assert "noop: no request" in out
    assert "replace: delete, acquire, create" in out
    assert "# forces replacement" in out
    assert "requests sent: acquire 3, create 3, delete 1, query 4, update 4" in out
    # Tokens are never printed.
    assert "demo-input-token" not in out and "demo-output-token" not in out
    # The state is in SQLite and names the last task.
    assert SqliteStore(str(state)).load("demo") is not None


def test_a_bad_spec_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"instanceId": "no spaces allowed"}')
    assert main(["demo", "--spec", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "instanceId" in err and "Traceback" not in err
