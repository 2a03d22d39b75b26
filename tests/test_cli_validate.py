"""``layoutsync validate FILE...``: exit 0 valid, 1 listing every error, 2 missing or not JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from layoutsync.cli import main

VENDOR = Path(__file__).resolve().parent.parent / "examples" / "vendor"
SCENARIO_1 = VENDOR / "scenario1-audio-video-watermark.json"
SCENARIO_2 = VENDOR / "scenario2-audio-only.json"


def run(capsys: pytest.CaptureFixture[str], *files: str | Path) -> tuple[int, str, str]:
    code = main(["validate", *map(str, files)])
    out, err = capsys.readouterr()
    return code, out, err


def corrected_scenario_1(tmp_path: Path) -> Path:
    body: dict[str, Any] = json.loads(SCENARIO_1.read_text())
    transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    transcoder["waterMarks"][0]["region"].update(width=120, height=120)
    path = tmp_path / "scenario1-fixed.json"
    path.write_text(json.dumps(body))
    return path


def test_valid_files_exit_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fixed = corrected_scenario_1(tmp_path)
    code, out, err = run(capsys, SCENARIO_2, fixed)
    assert code == 0 and err == ""
    assert out.splitlines() == [f"{SCENARIO_2}: valid", f"{fixed}: valid"]


def test_invalid_file_exits_1_listing_every_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, SCENARIO_1)
    assert code == 1
    assert out.splitlines() == [
        f"{SCENARIO_1}: 2 error(s)",
        "  /services/cloudTranscoder/config/transcoder/waterMarks/0/region/height: "
        "100 is below the minimum 120",
        "  /services/cloudTranscoder/config/transcoder/waterMarks/0/region/width: "
        "100 is below the minimum 120",
    ]


def test_a_bare_transcoder_object_is_accepted_and_pointers_are_relative(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body = json.loads(SCENARIO_1.read_text())
    bare = copy.deepcopy(body["services"]["cloudTranscoder"]["config"]["transcoder"])
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(bare))
    code, out, _ = run(capsys, path)
    assert code == 1
    assert "  /waterMarks/0/region/width: 100 is below the minimum 120" in out.splitlines()


@pytest.mark.parametrize("content", [None, "{not json", ""])
def test_missing_or_non_json_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, path)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: ")


def test_the_worst_outcome_decides_the_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, SCENARIO_2, SCENARIO_1, tmp_path / "missing.json")
    assert code == 2
    assert f"{SCENARIO_2}: valid" in out and f"{SCENARIO_1}: 2 error(s)" in out


def test_tokens_never_appear_in_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    body = json.loads(SCENARIO_2.read_text())
    body["services"]["cloudTranscoder"]["config"]["transcoder"]["outputs"][0]["rtc"]["rtcToken"] = (
        987654321
    )
    path = tmp_path / "token.json"
    path.write_text(json.dumps(body))
    code, out, _ = run(capsys, path)
    assert code == 1 and "987654321" not in out and "rtcToken" in out
