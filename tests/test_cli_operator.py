"""The operator's first hour (issue 13): help that tells the truth, one exit-code convention,
no tracebacks, waits that say what they wait for, and a way back from lost state."""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _sessionkit import IN_TOKEN, OUT_TOKEN, EmulatorProcess, emulator_process, spec_doc

import layoutsync
from layoutsync.apply import ReconcileResult
from layoutsync.cli import build_parser, main
from layoutsync.cli._common import HelpFormatter
from layoutsync.cli._progress import resume_note
from layoutsync.cli._session_verbs import result_line
from layoutsync.plan import Plan
from layoutsync.store import DesiredInputs, Intent, SessionState, SqliteStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CLIENT_ENV = (
    "LAYOUTSYNC_BASE_URL",
    "LAYOUTSYNC_APP_ID",
    "LAYOUTSYNC_CUSTOMER_KEY",
    "LAYOUTSYNC_CUSTOMER_SECRET",
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for secret in (IN_TOKEN, OUT_TOKEN):
        assert secret not in out + err
    return code, out, err


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {
        flag
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with spec.json and no client environment."""
    monkeypatch.chdir(tmp_path)
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "spec.json").write_text(json.dumps(spec_doc(instanceId="op-offline")))
    return tmp_path


# --- help ----------------------------------------------------------------------------------------


class TestHelp:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "--version")
        assert code == 0 and out.strip() == f"layoutsync {layoutsync.__version__}"

    def test_bench_help_lists_the_benchmarks(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "bench", "--help")
        assert code == 0
        for name in ("client", "compile", "daemon", "emulator", "reconcile"):
            assert re.search(rf"^  {name}\s+\S", out, re.MULTILINE), name
        assert "--strict" in out

    def test_every_flag_of_every_verb_says_its_default(self) -> None:
        for verb, parser in _verbs().items():
            assert issubclass(parser.formatter_class, HelpFormatter), verb
            formatter = parser.formatter_class(prog=verb)
            for action in parser._actions:
                if action.option_strings and action.default is not argparse.SUPPRESS:
                    text = formatter._get_help_string(action) or ""
                    assert "default" in text or "required" in text, (verb, action.option_strings)

    def test_readme_table_lists_exactly_the_verbs_and_flags(self) -> None:
        readme = (ROOT / "README.md").read_text()
        table = readme.split("## Command line", 1)[1].split("\n\n", 2)[1]
        rows = re.findall(r"^\| `layoutsync (\w+)([^`]*)` \|", table, re.MULTILINE)
        documented: dict[str, set[str]] = {}
        for verb, rest in rows:
            documented.setdefault(verb, set()).update(re.findall(r"--[a-z][a-z-]*", rest))
        actual = {verb: _flags(parser) for verb, parser in _verbs().items()}
        state = _verbs()["state"]
        (actions,) = (a for a in state._actions if isinstance(a, argparse._SubParsersAction))
        actual["state"] = set().union(*(_flags(p) for p in actions.choices.values()))
        assert documented == actual


# --- exit codes ------------------------------------------------------------------------------


class TestExitCodes:
    @pytest.mark.parametrize(
        "argv",
        [
            ["validate", "missing.json"],
            ["compile", "missing.json", "--hosts", "101"],
            ["preview", "missing.json", "--hosts", "101", "--out", "x.svg"],
            ["plan", "missing.json", "--hosts", "101"],
            ["apply", "missing.json", "--hosts", "101"],
            ["destroy", "missing.json"],
            ["adopt", "missing.json", "--task-id", "t1"],
            ["state", "list", "--state", "missing.db"],
            ["daemon", "--config", "missing-dir"],
        ],
    )
    def test_a_missing_file_is_2_everywhere(
        self,
        argv: list[str],
        offline: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("LAYOUTSYNC_API_TOKEN", "t")
        monkeypatch.setenv("LAYOUTSYNC_NCS_SECRET", "s")
        code, _, err = run(capsys, *argv)
        assert code == 2, err
        assert "missing" in err and ("no such" in err or "does not exist" in err), err

    def test_with_detailed_exitcode_a_usage_error_is_never_2(
        self, offline: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for argv in (
            ["plan", "missing.json", "--hosts", "101", "--detailed-exitcode"],
            ["plan", "spec.json", "--hosts", "x", "--detailed-exitcode"],
            ["plan", "spec.json", "--detailed-exitcode"],  # --hosts is required
            ["plan", "spec.json", "--hosts", "101", "--bogus", "--detailed-exitcode"],
        ):
            code, _, err = run(capsys, *argv)
            assert code == 1, (argv, err)
        code, _, _ = run(capsys, "plan", "spec.json")
        assert code == 2  # without it, a usage error is 2 as everywhere

    def test_a_missing_spec_is_reported_before_missing_credentials(
        self, offline: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run(capsys, "apply", "missing.json", "--hosts", "101")
        assert code == 2 and "no such file" in err and "LAYOUTSYNC_" not in err
        code, _, err = run(capsys, "apply", "spec.json", "--hosts", "101")
        assert code == 1 and "no app id: set LAYOUTSYNC_APP_ID in the environment" in err
        assert "pass app_id" not in err and "app_id=" not in err
        assert not (offline / "layoutsync.db").exists()


# --- messages --------------------------------------------------------------------------------


class TestMessages:
    def test_validate_recognises_a_layout_spec(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "validate", str(EXAMPLES / "grid.json"))
        assert code == 0
        assert "a layout spec, not a request body: valid as a spec" in out
        assert "layoutsync compile" in out and "error" not in out

    def test_validate_reads_stdin(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        body = (EXAMPLES / "vendor" / "scenario2-audio-only.json").read_text()
        monkeypatch.setattr(sys, "stdin", io.StringIO(body))
        assert run(capsys, "validate", "-") == (0, "stdin: valid\n", "")
        monkeypatch.setattr(sys, "stdin", io.StringIO('{"instanceId": "x", "layout": {}}'))
        code, out, _ = run(capsys, "validate", "-")
        assert code == 1 and "a layout spec, not a request body" in out
        assert "/input: is required but missing" in out
        monkeypatch.setattr(sys, "stdin", io.StringIO("{nope"))
        code, _, err = run(capsys, "validate", "-")
        assert code == 2 and "stdin: not JSON" in err

    def test_a_colour_says_what_is_allowed(
        self, offline: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (offline / "red.json").write_text(json.dumps(spec_doc(canvas={"color": "red"})))
        code, _, err = run(capsys, "compile", "red.json", "--hosts", "101")
        assert code == 1
        assert "/canvas/color: 'red' is not a colour: use \"#RRGGBB\"" in err
        assert "0..16777215" in err

    def test_notes_for_surprises(self, offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
        layout = {"template": "grid", "maxTiles": 64}
        (offline / "big.json").write_text(json.dumps(spec_doc(layout=layout)))
        code, _, err = run(
            capsys, "compile", "big.json", "--hosts", "101,102,101", "--speaker", "7"
        )
        assert code == 0
        assert "note: --hosts lists 101 more than once; counted once" in err
        assert "note: --speaker 7 is not among --hosts" in err
        assert "note: layout.maxTiles is 64 but the canvas holds at most" in err
        code, _, err = run(capsys, "compile", "spec.json", "--hosts", "101,102", "--speaker", "102")
        assert "note:" not in err

    def test_compile_with_secrets_writes_the_file_0600(
        self, offline: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = offline / "body.json"
        out.write_text("{}")
        out.chmod(0o644)
        code, _, _ = run(
            capsys, "compile", "spec.json", "--hosts", "101", "--show-secrets", "--out", str(out)
        )
        assert code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert IN_TOKEN in out.read_text()

    def test_a_summary_never_promises_a_retry_the_cli_will_not_make(self) -> None:
        plan = Plan("update", ("x",), instance_id="i", task_id="t")
        pending = ReconcileResult("update", plan, "t", 4, ("update",), requeue_after=5.0)
        line = result_line("apply", pending, "layoutsync apply s.json --hosts 101")
        assert "reconcile again in" not in line
        assert "run `layoutsync apply s.json --hosts 101` again to finish" in line


# --- state and adopt (no service needed) ---------------------------------------------------------


def _row(path: Path, name: str, instance: str, task: str | None = "task-1") -> None:
    with SqliteStore(path) as store:
        store.save(
            SessionState(
                name=name,
                instance_id=instance,
                builder_token="bt-SECRET",
                task_id=task,
                sequence_id=3,
            )
        )


class TestStateVerbs:
    def test_list_show_mv_forget(self, offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
        _row(offline / "layoutsync.db", "room", "room-1")
        with SqliteStore(offline / "layoutsync.db") as store:
            store.save_desired("room", DesiredInputs((101, 102), 102, 1.0))
        code, out, _ = run(capsys, "state", "list")
        assert code == 0 and re.search(r"^room\s+room-1\s+task-1\s+3\s+-$", out, re.MULTILINE)
        code, out, _ = run(capsys, "state", "show", "room", "--json")
        shown = json.loads(out)
        assert shown["builderToken"] == "***" and shown["taskId"] == "task-1"
        assert "bt-SECRET" not in out
        code, _, err = run(capsys, "state", "show", "nope")
        assert code == 1 and "has no session 'nope' (sessions: room)" in err
        assert shown["desiredHosts"] == [101, 102] and shown["desiredSpeaker"] == 102
        assert run(capsys, "state", "mv", "room", "lobby")[0] == 0
        with SqliteStore(offline / "layoutsync.db") as store:
            assert store.names() == ("lobby",)
            assert store.load_desired("lobby") == DesiredInputs((101, 102), 102, 1.0)
            assert store.load_desired("room") is None
        code, out, _ = run(capsys, "state", "forget", "lobby")
        assert code == 0 and "still running" in out and "layoutsync adopt" in out
        assert run(capsys, "state", "list")[1].strip().endswith("no sessions")

    def test_apply_names_the_fix_for_a_row_under_another_name(
        self, offline: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A row made by an older layoutsync (named after the instanceId) is found, and the
        message gives the exact command; nothing is sent."""
        _row(offline / "layoutsync.db", "op-offline", "op-offline")
        code, _, err = run(capsys, "plan", "spec.json", "--hosts", "101")
        assert code == 1
        assert "Run `layoutsync state mv op-offline spec`" in err

    def test_plan_writes_nothing_to_an_existing_state_file(
        self, offline: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _row(offline / "layoutsync.db", "spec", "op-offline")
        before = (offline / "layoutsync.db").read_bytes()
        assert run(capsys, "plan", "spec.json", "--hosts", "101,102")[0] == 0
        with SqliteStore(offline / "layoutsync.db") as store:
            assert store.load_desired("spec") is None
        assert (offline / "layoutsync.db").read_bytes() == before

    def test_one_naming_rule_for_cli_and_daemon(self) -> None:
        from layoutsync.daemon import config
        from layoutsync.spec import session_name

        assert config.session_name is session_name
        assert session_name("specs/lobby.json") == "lobby"


# --- bench --------------------------------------------------------------------------------------


def test_bench_fails_on_a_machine_property_only_with_strict(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from layoutsync.bench import Figure
    from layoutsync.cli import bench

    def fake(_options: Any) -> list[Figure]:
        return [Figure("fake", "rate", 10.0, "updates/s", ">= 2,000", False, machine=True)]

    monkeypatch.setattr(bench, "discover", lambda: [("fake", fake)])
    code, out, _ = run(capsys, "bench", "--quick")
    assert code == 0 and out.startswith("miss fake.rate") and "[machine property]" in out
    assert run(capsys, "bench", "--quick", "--strict")[0] == 1


# --- against a real emulator process -------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with emulator_process() as running:
        yield running


@pytest.fixture
def online(offline: Path, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorProcess) -> Path:
    for name, value in emulator.env.items():
        monkeypatch.setenv(name, value)
    instance = f"op-{offline.name[-20:]}".replace(".", "-")
    (offline / "spec.json").write_text(json.dumps(spec_doc(instanceId=instance)))
    return offline


def _env(emulator: EmulatorProcess) -> dict[str, str]:
    return {**os.environ, **emulator.env, "PYTHONUNBUFFERED": "1"}


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "layoutsync", *argv]


class TestRecovery:
    def test_lost_state_conflict_names_adopt_and_adopt_takes_the_task_back(
        self,
        online: Path,
        emulator: EmulatorProcess,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        assert run(capsys, "apply", "spec.json", "--hosts", "101", "--quiet")[0] == 0
        with SqliteStore(online / "layoutsync.db") as store:
            row = store.load("spec")
        assert row is not None and row.task_id and row.builder_token
        assert run(capsys, "state", "forget", "spec")[0] == 0

        code, _, err = run(capsys, "apply", "spec.json", "--hosts", "101,102", "--quiet")
        assert code == 1
        assert "run `layoutsync adopt SPEC --task-id TASK_ID`" in err  # the 409 names no task
        assert "LAYOUTSYNC_BUILDER_TOKEN" in err
        assert re.search(r"the task ends by itself \d+ s \(its idleTimeout\) after its hosts", err)
        assert (
            len(emulator.tasks(json.loads((online / "spec.json").read_text())["instanceId"])) == 1
        )

        monkeypatch.setattr(sys, "stdin", io.StringIO(row.builder_token + "\n"))
        code, out, err = run(capsys, "adopt", "spec.json", "--task-id", row.task_id)
        assert code == 0, err
        assert f"session 'spec' now drives task {row.task_id}" in out
        assert row.builder_token not in out + err
        code, out, _ = run(capsys, "apply", "spec.json", "--hosts", "101,102", "--quiet")
        assert code == 0 and f"task {row.task_id}" in out and "calls sent: update" in out

        monkeypatch.setenv("LAYOUTSYNC_BUILDER_TOKEN", row.builder_token)
        code, _, err = run(capsys, "adopt", "spec.json", "--task-id", row.task_id)
        assert code == 1 and "already drives task" in err

    def test_destroy_of_a_task_already_gone_says_so(
        self, online: Path, emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(capsys, "apply", "spec.json", "--hosts", "101", "--quiet")[0] == 0
        with SqliteStore(online / "layoutsync.db") as store:
            row = store.load("spec")
        assert row is not None and row.task_id and row.builder_token
        base = f"{emulator.base_url}/v1/projects/{emulator.env['LAYOUTSYNC_APP_ID']}"
        auth = (emulator.env["LAYOUTSYNC_CUSTOMER_KEY"], emulator.env["LAYOUTSYNC_CUSTOMER_SECRET"])
        gone = httpx.delete(
            f"{base}/rtsc/cloud-transcoder/tasks/{row.task_id}",
            params={"builderToken": row.builder_token},
            auth=auth,
            timeout=10,
        )
        assert gone.status_code == 200, gone.text
        code, out, _ = run(capsys, "destroy", "spec.json")
        assert code == 0
        assert f"task {row.task_id} was already gone" in out and "deleted;" not in out


class TestProcesses:
    @pytest.mark.parametrize("json_flag", [[], ["--json"]])
    def test_a_closed_pipe_is_no_traceback(
        self, online: Path, emulator: EmulatorProcess, json_flag: list[str]
    ) -> None:
        """``plan | head -1``: the reader is gone before anything is written."""
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(
                _cli("plan", "spec.json", "--hosts", "101,102", *json_flag),
                cwd=online,
                env=_env(emulator),
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
        finally:
            os.close(write)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert done.returncode == 141

    def test_waits_print_a_line_and_a_spinner_on_a_terminal(
        self, online: Path, emulator: EmulatorProcess
    ) -> None:
        env = _env(emulator)
        subprocess.run(
            _cli("apply", "spec.json", "--hosts", "101", "--quiet"),
            cwd=online,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        emulator.admin.post("/_emulator/faults", json={"kind": "update", "action": "202"})
        output, code = _in_pty(_cli("apply", "spec.json", "--hosts", "101,102"), online, env)
        assert code == 0, output
        assert re.search(
            r"apply: 202 \(accepted, not finished\) from Update \(request id [^)]+\); asking "
            r"with a Query whether it finished in 1\.0 s, 1 of 4",
            output,
        ), output
        assert "\x1b[?25l" in output  # rich hides the cursor while its spinner runs
        assert "calls sent: update, query" in output

        emulator.admin.post("/_emulator/faults", json={"kind": "update", "action": "202"})
        quiet, code = _in_pty(_cli("apply", "spec.json", "--hosts", "101", "--quiet"), online, env)
        assert code == 0 and "202 (accepted" not in quiet and "\x1b[?25l" not in quiet

    def test_ctrl_c_says_what_is_resumed(self, offline: Path) -> None:
        with socket.socket() as probe:  # a loopback port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "LAYOUTSYNC_BASE_URL": f"http://127.0.0.1:{port}",
            "LAYOUTSYNC_APP_ID": "a",
            "LAYOUTSYNC_CUSTOMER_KEY": "k",
            "LAYOUTSYNC_CUSTOMER_SECRET": "s",
        }
        process = subprocess.Popen(
            _cli("apply", "spec.json", "--hosts", "101"),
            cwd=offline,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stderr is not None
            first = process.stderr.readline()  # bounded: the first back-off starts at once
            assert re.match(
                r"apply: no response \(ConnectError\) from Acquire; retrying in \d s, 1 of 3",
                first,
            ), first
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        assert process.returncode == 130
        assert "apply: interrupted; an Acquire was under way" in err
        assert "`layoutsync apply spec.json --hosts 101` starts the Create over" in err
        assert "Traceback" not in err


def _in_pty(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, int]:
    """Run ``argv`` with a terminal as stdin/stdout/stderr; its whole output and exit code."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**env, "TERM": "xterm"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 4096)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace"), code


class TestEmulatorBanner:
    def test_the_admin_link_answers_and_the_pasted_environment_works(self, offline: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in CLIENT_ENV:
            env.pop(name, None)
        process = subprocess.Popen(
            _cli("emulator", "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            assert process.stdout is not None
            lines = []
            while not lines or not lines[-1].strip().startswith("export "):
                line = process.stdout.readline()
                assert line, "the emulator exited early:\n" + "".join(lines)
                lines.append(line)
            banner = "".join(lines)
            admin = re.search(r"admin API:\s+(\S+)", banner)
            assert admin is not None
            index = httpx.get(admin.group(1), timeout=10)
            assert index.status_code == 200
            paths = {route["path"] for route in index.json()["admin"]}
            assert {"/_emulator/tasks", "/_emulator/faults", "/_emulator/reset"} <= paths
            pasted = dict(
                pair.split("=", 1) for pair in lines[-1].strip().removeprefix("export ").split()
            )
            assert set(pasted) == set(CLIENT_ENV)
            done = subprocess.run(
                _cli("apply", "spec.json", "--hosts", "101", "--quiet"),
                cwd=offline,
                env={**env, **pasted},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        finally:
            process.terminate()
            process.wait(timeout=15)


def test_a_daemon_with_no_spec_says_so(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    env = {
        **os.environ,
        "LAYOUTSYNC_API_TOKEN": "t" * 16,
        "LAYOUTSYNC_NCS_SECRET": "s" * 16,
        "LAYOUTSYNC_BASE_URL": "http://127.0.0.1:9",
        "LAYOUTSYNC_APP_ID": "a",
        "LAYOUTSYNC_CUSTOMER_KEY": "k",
        "LAYOUTSYNC_CUSTOMER_SECRET": "s",
    }
    process = subprocess.Popen(
        _cli("daemon", "--config", "specs", "--listen", "127.0.0.1:0", "--state", "s.db"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        while True:
            line = process.stdout.readline()
            assert line, "the daemon exited early:\n" + "".join(seen)
            seen.append(line)
            if '"listening"' in line or "no sessions" in line:
                break
        assert "no sessions: no spec file" in "".join(seen)
    finally:
        process.terminate()
        process.wait(timeout=20)


# --- examples for running the daemon -------------------------------------------------------------


def test_the_example_specs_folder_loads_as_the_daemon_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from layoutsync.compile import compile_layout
    from layoutsync.daemon.config import SpecCatalog

    for room in ("LOBBY", "STAGE", "PANEL"):
        monkeypatch.setenv(f"{room}_INPUT_TOKEN", "in")
        monkeypatch.setenv(f"{room}_OUTPUT_TOKEN", "out")
    changes = SpecCatalog(EXAMPLES / "specs").scan()
    assert not changes.failed
    assert sorted(loaded.name for loaded in changes.added) == ["lobby", "panel", "stage"]
    for loaded in changes.added:
        assert compile_layout(loaded.spec, [101, 102, 103]).body is not None


def test_the_systemd_unit_runs_flags_that_exist() -> None:
    unit = (EXAMPLES / "systemd" / "layoutsync.service").read_text()
    (command,) = re.findall(r"^ExecStart=\S+ (.+)$", unit, re.MULTILINE)
    args = build_parser().parse_args(command.split())
    assert args.verb == "daemon" and str(args.config) == "/etc/layoutsync/specs"
    assert "EnvironmentFile=" in unit and "KillSignal=SIGTERM" in unit


@pytest.mark.parametrize(
    ("intent", "words"),
    [
        (None, "nothing was left half done"),
        (Intent("create", at=1.0), "sends it again with the same builderToken"),
        (Intent("update", at=1.0, task_id="t", sequence_id=3), "the Update with sequenceId 3"),
        (Intent("delete", at=1.0, task_id="t"), "the Delete of task t"),
    ],
)
def test_an_interrupt_says_what_the_next_run_resumes(intent: Intent | None, words: str) -> None:
    row = SessionState(name="spec", instance_id="i", intent=intent)
    note = resume_note(row, "layoutsync apply spec.json --hosts 101")
    assert words in note and "`layoutsync apply spec.json --hosts 101`" in note
