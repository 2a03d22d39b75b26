"""Spec files the daemon manages (layoutsync.daemon.config): scan, reload, errors kept apart."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from layoutsync.daemon.config import ConfigProblem, SpecCatalog, watch_specs


def spec_doc(instance_id: str, channel: str = "room", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "instanceId": instance_id,
        "input": {"channel": channel, "token": "in-token"},
        "output": {
            "channel": f"{channel}-out",
            "uid": 9000,
            "token": "out-token",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://example.com/placeholder.png",
    }
    doc.update(extra)
    return doc


def write(path: Path, doc: object) -> None:
    """Write and move the mtime on, so a rewrite within one clock tick is still seen."""
    text = doc if isinstance(doc, str) else json.dumps(doc)
    existed = path.exists()
    before = path.stat().st_mtime_ns if existed else 0
    path.write_text(text, encoding="utf-8")
    if existed:
        os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


class TestScan:
    """scan() reports what was added, changed and removed since the last scan."""

    def test_a_directory_gives_one_session_per_file(self, tmp_path: Path) -> None:
        write(tmp_path / "lobby.json", spec_doc("lobby"))
        write(tmp_path / "stage.json", spec_doc("stage", channel="stage"))
        (tmp_path / "notes.txt").write_text("not a spec")
        (tmp_path / ".lobby.json.swp").write_text("editor junk")
        catalog = SpecCatalog(tmp_path)
        changes = catalog.scan()
        assert [loaded.name for loaded in changes.added] == ["lobby", "stage"]
        assert changes.failed == ()
        assert catalog.specs["stage"].spec.input_channel == "stage"

    def test_a_single_file(self, tmp_path: Path) -> None:
        path = tmp_path / "grid.json"
        write(path, spec_doc("grid"))
        changes = SpecCatalog(path).scan()
        assert [(loaded.name, loaded.path) for loaded in changes.added] == [("grid", path)]

    def test_toml_files(self, tmp_path: Path) -> None:
        (tmp_path / "t.toml").write_text(
            'instanceId = "t"\nplaceholderImage = "https://example.com/p.png"\n'
            '[input]\nchannel = "c"\ntoken = "x"\n'
            '[output]\nchannel = "o"\nuid = 5\ntoken = "y"\n'
            "[output.video]\nwidth = 640\nheight = 360\n"
        )
        changes = SpecCatalog(tmp_path).scan()
        assert [loaded.name for loaded in changes.added] == ["t"]

    def test_a_rescan_without_changes_is_empty(self, tmp_path: Path) -> None:
        write(tmp_path / "a.json", spec_doc("a"))
        catalog = SpecCatalog(tmp_path)
        catalog.scan()
        changes = catalog.scan()
        assert not changes
        assert changes.failed == ()

    def test_new_changed_and_removed_files(self, tmp_path: Path) -> None:
        write(tmp_path / "a.json", spec_doc("a"))
        write(tmp_path / "b.json", spec_doc("b"))
        catalog = SpecCatalog(tmp_path)
        catalog.scan()
        write(tmp_path / "a.json", spec_doc("a", idleTimeout=60))
        (tmp_path / "b.json").unlink()
        write(tmp_path / "c.json", spec_doc("c"))
        changes = catalog.scan()
        assert [loaded.name for loaded in changes.added] == ["c"]
        assert [loaded.name for loaded in changes.changed] == ["a"]
        assert catalog.specs["a"].spec.idle_timeout == 60
        assert [loaded.name for loaded in changes.removed] == ["b"]
        assert sorted(catalog.specs) == ["a", "c"]

    def test_touching_a_file_without_changing_it_is_not_a_change(self, tmp_path: Path) -> None:
        write(tmp_path / "a.json", spec_doc("a"))
        catalog = SpecCatalog(tmp_path)
        catalog.scan()
        write(tmp_path / "a.json", json.dumps(spec_doc("a"), indent=2))
        assert not catalog.scan()

    def test_an_invalid_edit_keeps_the_previous_spec(self, tmp_path: Path) -> None:
        write(tmp_path / "a.json", spec_doc("a", idleTimeout=30))
        catalog = SpecCatalog(tmp_path)
        catalog.scan()
        write(tmp_path / "a.json", spec_doc("a", idleTimeout=0))
        changes = catalog.scan()
        assert not changes
        [error] = changes.failed
        assert error.name == "a"
        assert "/idleTimeout" in error.message
        assert str(error).startswith(str(tmp_path / "a.json"))
        assert catalog.specs["a"].spec.idle_timeout == 30
        assert catalog.error_for("a") == error
        # the error stays reported until the file is fixed
        assert catalog.scan().failed == (error,)
        write(tmp_path / "a.json", spec_doc("a", idleTimeout=45))
        fixed = catalog.scan()
        assert fixed.failed == ()
        assert [loaded.name for loaded in fixed.changed] == ["a"]
        assert catalog.error_for("a") is None

    def test_a_new_invalid_file_is_reported_and_not_added(self, tmp_path: Path) -> None:
        write(tmp_path / "bad.json", "{not json")
        catalog = SpecCatalog(tmp_path)
        changes = catalog.scan()
        assert changes.added == ()
        [error] = changes.failed
        assert "not JSON" in error.message
        assert "bad" not in catalog.specs

    def test_two_files_may_not_share_an_instance_id(self, tmp_path: Path) -> None:
        write(tmp_path / "a.json", spec_doc("same"))
        catalog = SpecCatalog(tmp_path)
        catalog.scan()
        write(tmp_path / "b.json", spec_doc("same"))
        changes = catalog.scan()
        assert changes.added == ()
        [error] = changes.failed
        assert error.name == "b"
        assert "already used by session 'a'" in error.message

    def test_two_files_with_one_stem(self, tmp_path: Path) -> None:
        write(tmp_path / "a.json", spec_doc("a"))
        (tmp_path / "a.toml").write_text('instanceId = "a2"')
        changes = SpecCatalog(tmp_path).scan()
        [error] = changes.failed
        assert "several files define session 'a'" in error.message

    def test_a_file_stem_that_is_no_session_name(self, tmp_path: Path) -> None:
        write(tmp_path / "my room.json", spec_doc("a"))
        [error] = SpecCatalog(tmp_path).scan().failed
        assert "session name 'my room'" in error.message

    def test_an_empty_directory(self, tmp_path: Path) -> None:
        changes = SpecCatalog(tmp_path).scan()
        assert not changes
        assert changes.failed == ()

    @pytest.mark.parametrize(
        ("name", "message"),
        [("missing", "no such file or directory"), ("spec.yaml", "not a spec file")],
    )
    def test_an_unusable_path(self, tmp_path: Path, name: str, message: str) -> None:
        path = tmp_path / name
        if name.endswith(".yaml"):
            path.write_text("x: 1")
        with pytest.raises(ConfigProblem, match=message):
            SpecCatalog(path).scan()


class TestWatch:
    """watch_specs() calls back after a change and stops when told (polling here: no waiting
    on inotify timing)."""

    @pytest.mark.anyio
    async def test_polling_calls_back_and_stops(self, tmp_path: Path) -> None:
        calls = 0
        stop = asyncio.Event()

        async def on_change() -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                stop.set()

        await asyncio.wait_for(
            watch_specs(tmp_path, on_change, stop=stop, poll_interval=0.01, force_polling=True),
            5.0,
        )
        assert calls == 2

    @pytest.mark.anyio
    async def test_watchfiles_sees_a_new_file(self, tmp_path: Path) -> None:
        stop = asyncio.Event()
        seen = asyncio.Event()

        async def on_change() -> None:
            seen.set()
            stop.set()

        watcher = asyncio.create_task(
            watch_specs(tmp_path, on_change, stop=stop, poll_interval=0.05, debounce_ms=10)
        )
        try:
            for _ in range(100):  # bounded: inotify needs the watch in place first
                await asyncio.sleep(0.05)
                write(tmp_path / "new.json", spec_doc("new"))
                if seen.is_set():
                    break
            await asyncio.wait_for(seen.wait(), 5.0)
        finally:
            stop.set()
            await asyncio.wait_for(watcher, 5.0)
