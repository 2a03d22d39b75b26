"""``layoutsync compile``: the body on stdout, tokens masked, exit codes 0/1/2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from layoutsync.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GRID = str(EXAMPLES / "grid.json")


def transcoder(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    return result


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["compile", *argv])
    out, err = capsys.readouterr()
    return code, out, err


class TestCompileVerb:
    def test_prints_the_body_with_tokens_masked(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run(capsys, GRID, "--hosts", "101,102,103")
        assert code == 0
        body = json.loads(out)
        t = transcoder(body)
        assert [v["rtc"]["rtcUid"] for v in t["videoInputs"]] == [101, 102, 103]
        assert "demo-input-token" not in out and "demo-output-token" not in out
        assert {v["rtc"]["rtcToken"] for v in t["videoInputs"]} == {"***"}
        assert "visible 101,102,103" in err

    def test_show_secrets_prints_tokens(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, GRID, "--hosts", "101", "--show-secrets")
        assert code == 0
        assert transcoder(json.loads(out))["outputs"][0]["rtc"]["rtcToken"] == "demo-output-token"

    def test_speaker_and_spaces_in_the_host_list(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(
            capsys, str(EXAMPLES / "speaker.json"), "--hosts", "101, 102,103", "--speaker", "103"
        )
        assert code == 0
        first = transcoder(json.loads(out))["videoInputs"][0]
        assert first["rtc"]["rtcUid"] == 103  # slot 0 is the main tile

    def test_out_writes_a_file(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        target = tmp_path / "body.json"
        code, out, err = run(capsys, GRID, "--hosts", "101", "--out", str(target))
        assert code == 0 and out == ""
        assert f"written to {target}" in err
        assert transcoder(json.loads(target.read_text()))["canvas"]["width"] == 1280
        assert "demo-input-token" not in target.read_text()

    def test_no_hosts_prints_null(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run(capsys, GRID, "--hosts", "")
        assert (code, out.strip()) == (0, "null")
        assert "no task needed" in err

    def test_toml_spec(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, str(EXAMPLES / "grid.toml"), "--hosts", "101,102")
        assert code == 0 and len(transcoder(json.loads(out))["videoInputs"]) == 2

    def test_bad_spec_exits_1_with_the_spec_error(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        doc = json.loads(Path(GRID).read_text())
        doc["layout"]["gapp"] = 4
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(doc))
        code, out, err = run(capsys, str(path), "--hosts", "101")
        assert code == 1 and out == ""
        assert err.startswith(f"error: {path}: /layout/gapp: is not an allowed field")
        assert "did you mean 'gap'?" in err
        assert "Traceback" not in err

    def test_missing_env_token_exits_1_naming_the_variable(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LS_TEST_TOKEN", raising=False)
        doc = json.loads(Path(GRID).read_text())
        doc["input"]["token"] = "env:LS_TEST_TOKEN"
        path = tmp_path / "env.json"
        path.write_text(json.dumps(doc))
        code, _, err = run(capsys, str(path), "--hosts", "101")
        assert code == 1
        assert "/input/token: environment variable LS_TEST_TOKEN is not set" in err
        monkeypatch.setenv("LS_TEST_TOKEN", "from-env")
        code, out, _ = run(capsys, str(path), "--hosts", "101", "--show-secrets")
        assert code == 0 and "from-env" in out

    @pytest.mark.parametrize("name", ["missing.json", "notjson.json", "bad.toml"])
    def test_missing_or_unparseable_file_exits_2(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
    ) -> None:
        if name != "missing.json":
            (tmp_path / name).write_text("{ this is not it")
        code, out, err = run(capsys, str(tmp_path / name), "--hosts", "101")
        assert code == 2 and out == ""
        assert err.startswith(f"error: {tmp_path / name}: ")

    @pytest.mark.parametrize(
        ("option", "value"),
        [("--hosts", "101,abc"), ("--hosts", "101,,102"), ("--hosts", "0"), ("--speaker", "x")],
    )
    def test_bad_uid_lists_exit_2_with_a_clear_message(
        self, capsys: pytest.CaptureFixture[str], option: str, value: str
    ) -> None:
        argv = [GRID, "--hosts", "101"] if option == "--speaker" else [GRID]
        code, out, err = run(capsys, *argv, option, value)
        assert code == 2 and out == ""
        assert err.startswith(f"error: {option}: ")
        assert "is not a host uid (an integer 1..4294967295)" in err


def _console_script() -> list[str]:
    found = shutil.which("layoutsync") or str(Path(sys.executable).with_name("layoutsync"))
    return [found]


def test_the_console_script_compiles_an_example() -> None:
    result = subprocess.run(
        [*_console_script(), "compile", GRID, "--hosts", "101,102"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(transcoder(json.loads(result.stdout))["videoInputs"]) == 2
    assert "demo-input-token" not in result.stdout


class TestOddPixels:
    """An odd size or watermark pixel is refused by name, never sent as written."""

    def test_an_odd_output_size_and_watermark_exit_1_naming_each_field(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        doc = json.loads((EXAMPLES / "grid.json").read_text())
        doc["output"]["video"].update(width=1281, height=721)
        doc.pop("canvas", None)
        doc["watermarks"] = [
            {"imageUrl": "https://cdn.example.com/l.png", "x": 1, "y": 3}
            | {"width": 121, "height": 125}
        ]
        spec = tmp_path / "odd.json"
        spec.write_text(json.dumps(doc))
        code, out, err = run(capsys, str(spec), "--hosts", "101")
        assert (code, out) == (1, "")
        for where, value in [
            ("/output/video/width", 1281),
            ("/output/video/height", 721),
            ("/watermarks/0/x", 1),
            ("/watermarks/0/y", 3),
            ("/watermarks/0/width", 121),
            ("/watermarks/0/height", 125),
        ]:
            assert f"{where}: {value} is odd" in err
        assert "Traceback" not in err
