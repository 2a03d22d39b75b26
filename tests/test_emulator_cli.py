"""``layoutsync emulator``: flags, and one end-to-end run as a real process on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from _sessionkit import emulator_process
from emulator_helpers import av_transcoder, body, update_params

from layoutsync.cli import build_parser, main
from layoutsync.cli.emulator import build_config
from layoutsync.emulator import DEFAULT_APP_ID, DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET
from layoutsync.emulator.process import run_emulator


def _config(*flags: str):
    return build_config(build_parser().parse_args(["emulator", *flags]))


def test_flags_build_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAYOUTSYNC_APP_ID", "LAYOUTSYNC_CUSTOMER_KEY", "LAYOUTSYNC_CUSTOMER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config = _config(
        "--app-id",
        "a1",
        "--app-id",
        "a2",
        "--disabled-app-id",
        "off",
        "--qps",
        "5",
        "--retried-create",
        "409",
        "--echo-config",
        "--fault",
        "create:commit-500:2",
        "--fault",
        "any:delay",
        "--fault-delay",
        "3",
        "--fault-rate",
        "0.25",
        "--fault-seed",
        "11",
        "--fault-actions",
        "500,429",
    )
    assert config.app_ids == ("a1", "a2") and config.disabled_app_ids == ("off",)
    assert (config.qps, config.retried_create, config.echo_config) == (5.0, 409, True)
    assert [(f.kind, f.action.name, f.count) for f in config.faults] == [
        ("create", "commit-500", 2),
        ("any", "delay", 1),
    ]
    assert config.faults[1].action.delay == 3
    assert config.random_faults is not None
    assert config.random_faults.seed == 11
    assert [a.name for a in config.random_faults.actions] == ["500", "429"]


def test_credentials_default_to_the_client_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYOUTSYNC_APP_ID", "env-app")
    monkeypatch.setenv("LAYOUTSYNC_CUSTOMER_KEY", "env-key")
    monkeypatch.setenv("LAYOUTSYNC_CUSTOMER_SECRET", "env-secret")
    config = _config()
    assert (config.app_ids, config.customer_key, config.customer_secret) == (
        ("env-app",),
        "env-key",
        "env-secret",
    )
    assert "env-secret" not in repr(config)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--fault", "create"], "KIND:ACTION"),
        (["--fault", "sometimes:500"], "kind"),
        (["--fault", "create:299"], "202 or 400..599"),
        (["--fault", "create:commit-404"], "5xx"),
        (["--fault-rate", "1.5"], "--fault-rate: '1.5' is not allowed: give a number from 0 to 1"),
        (["--qps", "0"], "--qps: '0' is not allowed: give a number above 0"),
        (["--port", "99999"], "--port: '99999' is not a port: give a number from 0 to 65535"),
        (["--port", "-1"], "--port: '-1' is not a port"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulator", *flags]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and words in err
    assert "Traceback" not in err and "[0, 1]" not in err and "or None" not in err


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_emulator_process_end_to_end(tmp_path: Path) -> None:
    secret = "e2e-secret-value"
    flags = ["--customer-key", "e2e-key", "--customer-secret", secret, "--app-id", "e2e-app"]
    with run_emulator(*flags, cwd=tmp_path) as running:
        base_url = running.base_url
        assert int(base_url.rsplit(":", 1)[1]) > 0
        with httpx.Client(base_url=base_url, auth=("e2e-key", secret), timeout=10) as client:
            assert client.get("/_emulator/health").json()["ok"] is True
            api = "/v1/projects/e2e-app/rtsc/cloud-transcoder"
            token = client.post(f"{api}/builderTokens", json={"instanceId": "e2e"}).json()[
                "tokenName"
            ]
            created = client.post(
                f"{api}/tasks", params={"builderToken": token}, json=body(av_transcoder())
            )
            assert created.status_code == 200
            assert created.headers["X-Request-ID"]
            task_id = created.json()["taskId"]

            fault = {"kind": "update", "action": "commit-drop"}
            assert client.post("/_emulator/faults", json=fault).status_code == 200
            changed = av_transcoder((101, 102, 103))
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                client.patch(
                    f"{api}/tasks/{task_id}", params=update_params(token, 0), json=body(changed)
                )
            (task,) = client.get("/_emulator/tasks").json()["tasks"]
            assert task["sequenceId"] == 0  # committed before the connection dropped

            query = client.get(f"{api}/tasks/{task_id}", params={"builderToken": token})
            assert query.status_code == 200
            deleted = client.delete(f"{api}/tasks/{task_id}", params={"builderToken": token})
            assert deleted.json()["status"] == "STOPPED"
            gone = client.get(f"{api}/tasks/{task_id}", params={"builderToken": token})
            assert gone.status_code == 404
            unauthorised = httpx.get(f"{base_url}{api}/tasks/{task_id}")
            assert unauthorised.status_code == 401 and unauthorised.headers["X-Request-ID"]
    printed = running.output(to_the_end=True)
    assert running.process.returncode == 0, printed
    assert "e2e-key" in printed and "e2e-app" in printed
    assert secret not in printed
    assert "Traceback" not in printed


@pytest.mark.e2e
def test_a_real_process_fails_like_a_network() -> None:
    """disconnect and commit-disconnect close the socket before any response byte; late holds
    the answer past the client's timeout and applies the call afterwards."""
    flags = ["--fault", "delete:disconnect", "--fault", "update:commit-disconnect"]
    flags += ["--fault", "create:late", "--fault-delay", "1.0"]
    with emulator_process("--seed", "3", *flags) as running:
        base_url = running.base_url
        api = f"/v1/projects/{DEFAULT_APP_ID}/rtsc/cloud-transcoder"
        auth = (DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET)
        with httpx.Client(base_url=base_url, auth=auth, timeout=0.3) as client:
            token = client.post(f"{api}/builderTokens", json={"instanceId": "net"}).json()
            token = token["tokenName"]
            with pytest.raises(httpx.ReadTimeout):
                client.post(
                    f"{api}/tasks", params={"builderToken": token}, json=body(av_transcoder())
                )
            assert client.get("/_emulator/tasks").json()["tasks"] == []  # not yet applied
            deadline = time.monotonic() + 10
            while not (tasks := client.get("/_emulator/tasks").json()["tasks"]):
                assert time.monotonic() < deadline, "the late Create was never applied"
                time.sleep(0.05)
            (task,) = tasks
            task_id = task["taskId"]
            (created,) = client.get("/_emulator/requests", params={"kind": "create"}).json()[
                "requests"
            ]
            assert (created["status"], created["note"]) == (200, "created+late")

            changed = av_transcoder((101, 102, 103))
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                client.patch(
                    f"{api}/tasks/{task_id}", params=update_params(token, 1), json=body(changed)
                )
            assert client.get(f"/_emulator/tasks/{task_id}").json()["sequenceId"] == 1

            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                client.delete(f"{api}/tasks/{task_id}", params={"builderToken": token})
            assert client.get(f"/_emulator/tasks/{task_id}").status_code == 200  # not applied
            updated = client.patch(
                f"{api}/tasks/{task_id}", params=update_params(token, 2), json=body(changed)
            )
            assert (updated.status_code, updated.content) == (200, b"")
            notes = [r["note"] for r in client.get("/_emulator/requests").json()["requests"]]
            assert "applied+disconnected" in notes and "disconnected" in notes
