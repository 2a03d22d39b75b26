"""The shipped examples: every spec compiles, and the vendor's own bodies meet our rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from layoutsync.compile import compile_layout
from layoutsync.spec import load_spec
from layoutsync.validate import TRANSCODER_POINTER, check_request

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VENDOR = EXAMPLES / "vendor"
SPECS = sorted([*EXAMPLES.glob("*.json"), *EXAMPLES.glob("*.toml")])
WATERMARK_WIDTH = f"{TRANSCODER_POINTER}/waterMarks/0/region/width: 100 is below the minimum 120"


def vendor(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((VENDOR / name).read_text())
    return body


def transcoder(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    return result


def test_every_example_spec_is_present() -> None:
    names = {path.name for path in SPECS}
    assert names == {
        "grid.json",
        "grid.toml",
        "speaker.json",
        "floating.json",
        "custom.json",
        "audio-only.json",
        "channel-mix.json",
    }


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_compiles_with_hosts_alone(path: Path) -> None:
    spec = load_spec(path)
    for hosts in ([101], [101, 102, 103], list(range(101, 121))):
        compiled = compile_layout(spec, hosts, env={})
        assert compiled.body is not None
        assert check_request(compiled.body) == ()


def test_the_grid_spec_is_short() -> None:
    assert len((EXAMPLES / "grid.json").read_text().splitlines()) <= 15


def test_grid_toml_is_the_same_spec_as_grid_json() -> None:
    assert load_spec(EXAMPLES / "grid.toml") == load_spec(EXAMPLES / "grid.json")


def _tokens_masked(body: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(body)
    for token in ("demo-input-token", "demo-output-token", "aab8b8f5a8cd4469a63042fcfafe7***"):
        text = text.replace(token, "TOKEN")
    masked: dict[str, Any] = json.loads(text)
    return masked


@pytest.mark.parametrize(
    ("spec_name", "vendor_name", "hosts"),
    [
        ("audio-only.json", "scenario2-audio-only.json", [123, 456]),
        ("channel-mix.json", "scenario3-channel-mix.json", [123, 456]),
    ],
)
def test_audio_examples_compile_to_the_vendor_scenarios(
    spec_name: str, vendor_name: str, hosts: list[int]
) -> None:
    """Up to tokens and the background URL, our audio specs give the vendor's own bodies."""
    doc = load_spec(EXAMPLES / spec_name).to_dict()
    doc["canvas"]["backgroundImage"] = "https://XXXX.jpg"
    body = compile_layout(load_spec(doc), hosts).body
    assert body is not None
    assert _tokens_masked(body) == _tokens_masked(vendor(vendor_name))


class TestVendorBodies:
    def test_scenario_1_fails_on_its_100px_watermark(self) -> None:
        messages = [
            str(error) for error in check_request(vendor("scenario1-audio-video-watermark.json"))
        ]
        assert WATERMARK_WIDTH in messages

    def test_scenario_1_with_a_120px_watermark_passes(self) -> None:
        body = copy.deepcopy(vendor("scenario1-audio-video-watermark.json"))
        transcoder(body)["waterMarks"][0]["region"].update(width=120, height=120)
        assert check_request(body) == ()

    @pytest.mark.parametrize("name", ["scenario2-audio-only.json", "scenario3-channel-mix.json"])
    def test_audio_only_scenarios_pass(self, name: str) -> None:
        assert check_request(vendor(name)) == ()

    def test_the_update_example_fails_on_mixed_channels(self) -> None:
        errors = check_request(vendor("update-example.json"))
        mixed = [
            e
            for e in errors
            if "every audio and video input must be in the same channel" in e.message
        ]
        assert [e.pointer for e in mixed] == [f"{TRANSCODER_POINTER}/audioInputs/0/rtc/rtcChannel"]
        assert mixed[0].message.startswith("'test' differs from 'test01'")
