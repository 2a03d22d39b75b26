"""`layoutsync plan` / `apply` / `destroy` against a real `layoutsync emulator` process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _sessionkit import IN_TOKEN, OUT_TOKEN, EmulatorProcess, emulator_process, spec_doc

from layoutsync.cli import main

INSTANCE = "room7-grid"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with emulator_process() as running:
        yield running


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorProcess) -> Path:
    """A working directory with spec.json, the client env pointing at the emulator, and a
    fresh instanceId per test (the emulator process is shared by the module)."""
    monkeypatch.chdir(tmp_path)
    for name, value in emulator.env.items():
        monkeypatch.setenv(name, value)
    instance = f"cli-{tmp_path.name[-20:]}".replace(".", "-")
    (tmp_path / "spec.json").write_text(json.dumps(spec_doc(instanceId=instance)))
    (tmp_path / "instance").write_text(instance)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    for secret in (IN_TOKEN, OUT_TOKEN):
        assert secret not in out and secret not in err
    return code, out, err


def instance_of(workdir: Path) -> str:
    return (workdir / "instance").read_text()


class TestPlan:
    def test_plan_without_state_is_a_create_and_writes_nothing(
        self, workdir: Path, capsys: pytest.CaptureFixture[str], emulator: EmulatorProcess
    ) -> None:
        before = len(emulator.requests())
        code, out, _ = run(capsys, "plan", "spec.json", "--hosts", "101,102", "--detailed-exitcode")
        assert code == 2
        assert "will be created (Acquire, Create)" in out
        assert "+ host 101: video" in out and "+ host 102: video" in out
        assert "***" in out
        assert not (workdir / "layoutsync.db").exists()
        assert len(emulator.requests()) == before

    def test_plan_json(self, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "plan", "spec.json", "--hosts", "101", "--json")
        assert code == 0
        data = json.loads(out)
        assert data["action"] == "create"
        assert data["calls"] == ["acquire", "create"]
        assert data["visible"] == [101]
        assert [h["uid"] for h in data["hosts"]] == [101]

    def test_bad_hosts_and_missing_spec_are_usage_errors(
        self, workdir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run(capsys, "plan", "spec.json", "--hosts", "101,abc", "--detailed-exitcode")
        assert code == 1 and "--hosts: 'abc' is not a host uid" in err
        code, _, err = run(capsys, "plan", "missing.json", "--hosts", "101")
        assert code == 2 and "no such file" in err
        assert "Traceback" not in err


class TestApply:
    def test_apply_twice_sends_nothing_the_second_time(
        self, workdir: Path, capsys: pytest.CaptureFixture[str], emulator: EmulatorProcess
    ) -> None:
        instance = instance_of(workdir)
        code, out, _ = run(capsys, "apply", "spec.json", "--hosts", "101,102")
        assert code == 0, out
        assert "will be created" in out
        assert "apply: create: 2 hosts added; task " in out
        assert "calls sent: acquire, create" in out
        (task,) = emulator.tasks(instance)
        mode = stat.S_IMODE((workdir / "layoutsync.db").stat().st_mode)
        assert mode == 0o600

        before = len(emulator.requests())
        code, out, _ = run(capsys, "apply", "spec.json", "--hosts", "102,101")
        assert code == 0
        assert out.startswith("No changes.")
        assert "calls sent: none" in out
        assert len(emulator.requests()) == before  # not even a Query

        code, _, _ = run(capsys, "plan", "spec.json", "--hosts", "101,102", "--detailed-exitcode")
        assert code == 0

        code, out, _ = run(
            capsys, "apply", "spec.json", "--hosts", "101,102,103", "--speaker", "103"
        )
        assert code == 0
        assert "+ host 103" in out and "(Update, sequenceId 0)" in out
        assert f"task {task['taskId']}, sequenceId 0; calls sent: update" in out
        (after,) = emulator.tasks(instance)
        assert (after["taskId"], after["sequenceId"], after["staleUpdates"]) == (
            task["taskId"],
            0,
            0,
        )

    def test_apply_json_and_destroy(
        self, workdir: Path, capsys: pytest.CaptureFixture[str], emulator: EmulatorProcess
    ) -> None:
        instance = instance_of(workdir)
        code, out, _ = run(
            capsys, "apply", "spec.json", "--hosts", "101", "--json", "--state", "s.db"
        )
        assert code == 0
        data = json.loads(out)
        assert data["plan"]["action"] == "create"
        assert data["result"]["calls"] == ["acquire", "create"]
        assert len(emulator.tasks(instance)) == 1

        code, out, _ = run(capsys, "destroy", "spec.json", "--state", "s.db")
        assert code == 0
        assert "destroy: delete; task " in out and " deleted; calls sent: delete" in out
        assert emulator.tasks(instance) == []
        code, out, _ = run(capsys, "destroy", "spec.json", "--state", "s.db")
        assert code == 0 and "nothing to destroy" in out

    def test_missing_credentials_is_a_clear_error(
        self, workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LAYOUTSYNC_APP_ID")
        code, _, err = run(capsys, "apply", "spec.json", "--hosts", "101")
        assert code == 1 and "LAYOUTSYNC_APP_ID" in err
        assert not (workdir / "layoutsync.db").exists()

    @pytest.mark.e2e
    def test_apply_as_a_process(self, workdir: Path, emulator: EmulatorProcess) -> None:
        """The installed command, end to end: twice the same hosts, one Create, no Update."""
        instance = instance_of(workdir)
        env = {**os.environ, **emulator.env}
        emulator.admin.delete("/_emulator/requests")
        command = [sys.executable, "-m", "layoutsync", "apply", "spec.json", "--hosts", "101,102"]
        outputs = []
        for _ in range(2):
            done = subprocess.run(
                command, cwd=workdir, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            assert IN_TOKEN not in done.stdout + done.stderr
            outputs.append(done.stdout)
        assert "calls sent: acquire, create" in outputs[0]
        assert "calls sent: none" in outputs[1]
        kinds = [r["kind"] for r in emulator.requests()]
        assert kinds == ["acquire", "create"]
        (task,) = emulator.tasks(instance)
        assert task["updateCount"] == 0
