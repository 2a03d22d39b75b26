"""Minted rtcTokens (spec ``tokens``): the vendor's vectors, parsing back, the spec rules,
the emulator's checks, and a session's tokens over a task's life (seven virtual days)."""

from __future__ import annotations

import copy
import importlib
import json
import secrets
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
from _sessionkit import GRID, Clock, Emulated, no_wait
from structlog.testing import capture_logs

from layoutsync import compile_layout, load_spec
from layoutsync.apply import Session
from layoutsync.cli import main
from layoutsync.cli.emulator import build_config
from layoutsync.emulator import Emulator, EmulatorConfig, ManualClock
from layoutsync.errors import SpecError
from layoutsync.spec import LayoutSpec
from layoutsync.store import MemoryStore, SqliteStore
from layoutsync.tokens import (
    ENV_APP_ID,
    INPUT_PRIVILEGES,
    OUTPUT_PRIVILEGES,
    TaskTokens,
    TokenMinter,
    TokenRecipe,
    mint_token,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from agoraiotools.AccessToken2 import AccessToken2, ServiceRtc
    from agoraiotools.RtcTokenBuilder2 import Role_Publisher, Role_Subscriber, RtcTokenBuilder2

# ../shared/reference/accesstoken2-vectors.md
APP_ID = "970CA35de60c44645bbae8a215061b33"
CERT = "5CFd2fd1755d40ecb72977518be15d3b"
OTHER_CERT = "0123456789abcdef0123456789abcdef"
VECTOR_CHANNEL = "7d72365eb983485397e3e3f9d460bdda"
VECTOR_RECIPE = TokenRecipe(issued_at=1111111, salt=1, lifetime=600)
VECTOR_UID = 2882341273
VECTOR_TOKEN = (
    "007eJxTYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4y"
    "N3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxgDCaiTj"
)
VECTOR_TOKEN_UID0 = (
    "007eJxTYLhzZP08Lxa1Pg57+TcXb/3cZ3wi4V6kbpbOog0G2dOYk20UGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4y"
    "N3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiQwMADacImo="
)
ENV = {"LS_TEST_CERT": CERT, ENV_APP_ID: APP_ID}
DAY = 86_400


def minted_doc(**tokens: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GRID)
    del doc["input"]["token"], doc["output"]["token"]
    doc["tokens"] = {"appCertificate": "env:LS_TEST_CERT", **tokens}
    return doc


def minted_spec(**tokens: Any) -> LayoutSpec:
    return load_spec(minted_doc(**tokens))


def minter(spec: LayoutSpec) -> TokenMinter:
    assert spec.token_settings is not None
    return TokenMinter(spec.token_settings, app_id=APP_ID, environ=ENV)


def parse(token: str) -> dict[str, Any]:
    """The fields of a token, as the vendor's parser reads them."""
    parsed = AccessToken2()
    assert parsed.from_string(token)
    rtc = parsed._AccessToken__service[ServiceRtc.kServiceType]
    uid = rtc._ServiceRtc__uid.decode()
    return {
        "app_id": parsed._AccessToken__app_id.decode(),
        "issued_at": parsed._AccessToken__issue_ts,
        "expire": parsed._AccessToken__expire,
        "salt": parsed._AccessToken__salt,
        "channel": rtc._ServiceRtc__channel_name.decode(),
        "uid": int(uid) if uid else 0,
        "privileges": dict(rtc._Service__privileges),
    }


def tokens_of(config: dict[str, Any]) -> tuple[set[str], str]:
    """(input tokens, output token) of an applied ``transcoder``."""
    inputs = {
        item["rtc"]["rtcToken"]
        for key in ("audioInputs", "videoInputs")
        for item in config.get(key, ())
    }
    return inputs, config["outputs"][0]["rtc"]["rtcToken"]


class TestVectors:
    """The vendor's AccessToken2 vectors come out of layoutsync's minting path exactly."""

    def test_both_vectors_reproduce(self) -> None:
        for uid, expected in ((VECTOR_UID, VECTOR_TOKEN), (0, VECTOR_TOKEN_UID0)):
            token = mint_token(APP_ID, CERT, VECTOR_CHANNEL, uid, VECTOR_RECIPE, INPUT_PRIVILEGES)
            assert token == expected

    def test_a_specs_input_token_is_the_uid_0_vector(self) -> None:
        doc = minted_doc(lifetime=600, renewBefore=60)
        doc["input"]["channel"] = VECTOR_CHANNEL
        spec = load_spec(doc)
        pair = minter(spec).pair(spec, TaskTokens(VECTOR_RECIPE, VECTOR_RECIPE))
        assert pair[0] == VECTOR_TOKEN_UID0

    def test_minting_equals_the_vendors_builder(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """RtcTokenBuilder2 with its clock and salt pinned builds the same strings."""
        module = importlib.import_module("agoraiotools.AccessToken2")
        monkeypatch.setattr(module, "time", types.SimpleNamespace(time=lambda: 1111111.0))
        monkeypatch.setattr(secrets.SystemRandom, "randint", lambda self, a, b: 1)
        for uid, role, privileges in (
            (0, Role_Subscriber, INPUT_PRIVILEGES),
            (9000, Role_Publisher, OUTPUT_PRIVILEGES),
        ):
            built = RtcTokenBuilder2.build_token_with_uid(
                APP_ID, CERT, VECTOR_CHANNEL, uid, role, 600, 600
            )
            assert built == mint_token(APP_ID, CERT, VECTOR_CHANNEL, uid, VECTOR_RECIPE, privileges)


class TestParsedBack:
    """Every minted token parses back to the right App ID, channel, uid, privileges, expiry."""

    def test_input_and_output_tokens(self) -> None:
        spec = minted_spec(lifetime=7200, renewBefore=600)
        tokens = minter(spec).new_task(1_800_000_000)
        input_token, output_token = minter(spec).pair(spec, tokens)
        got_in, got_out = parse(input_token), parse(output_token)
        assert (got_in["app_id"], got_in["channel"], got_in["uid"]) == (APP_ID, "room7", 0)
        assert got_in["privileges"] == {ServiceRtc.kPrivilegeJoinChannel: 7200}
        assert (got_out["app_id"], got_out["channel"], got_out["uid"]) == (
            APP_ID,
            "room7-live",
            9000,
        )
        assert got_out["privileges"] == {
            ServiceRtc.kPrivilegeJoinChannel: 7200,
            ServiceRtc.kPrivilegePublishAudioStream: 7200,
            ServiceRtc.kPrivilegePublishVideoStream: 7200,
            ServiceRtc.kPrivilegePublishDataStream: 7200,
        }
        for got, recipe in ((got_in, tokens.input), (got_out, tokens.output)):
            assert got["issued_at"] + got["expire"] == recipe.expires_at == 1_800_007_200
            assert got["salt"] == recipe.salt

    def test_the_same_recipe_makes_the_same_token(self) -> None:
        spec = minted_spec()
        tokens = minter(spec).new_task(1_800_000_000)
        assert minter(spec).pair(spec, tokens) == minter(spec).pair(spec, tokens)
        assert minter(spec).pair(spec, minter(spec).new_task(1_800_000_000)) != minter(spec).pair(
            spec, tokens
        )  # a new salt


class TestSpec:
    """The ``tokens`` key: defaults, bounds, references only, and no tokens given beside it."""

    def test_defaults(self) -> None:
        settings = minted_spec().token_settings
        assert settings is not None
        assert (settings.lifetime, settings.renew_before, settings.output_expiry) == (
            86400,
            3600,
            "warn",
        )
        assert "CERT" not in repr(minted_spec()) or "LS_TEST_CERT" in repr(settings)

    def test_tokens_given_beside_tokens_is_an_error_naming_both_fields(self) -> None:
        doc = minted_doc()
        doc["input"]["token"] = "literal"
        doc["output"]["token"] = "env:OUT"
        with pytest.raises(SpecError) as raised:
            load_spec(doc)
        pointers = {error.pointer for error in raised.value.errors}
        assert pointers == {"/input/token", "/output/token"}
        assert "must be absent" in str(raised.value)

    def test_without_tokens_the_token_fields_are_required(self) -> None:
        doc = copy.deepcopy(GRID)
        del doc["output"]["token"]
        with pytest.raises(SpecError, match=r"/output/token.*tokens"):
            load_spec(doc)

    @pytest.mark.parametrize(
        ("tokens", "pointer"),
        [
            ({"appCertificate": CERT}, "/tokens/appCertificate"),
            ({"appCertificate": "env:1BAD"}, "/tokens/appCertificate"),
            ({"appCertificate": "env:C", "lifetime": 86401}, "/tokens/lifetime"),
            ({"appCertificate": "env:C", "lifetime": 10}, "/tokens/lifetime"),
            (
                {"appCertificate": "env:C", "lifetime": 3600, "renewBefore": 2000},
                "/tokens/renewBefore",
            ),
            ({"appCertificate": "env:C", "outputExpiry": "never"}, "/tokens/outputExpiry"),
            ({"appCertificate": "env:C", "extra": 1}, "/tokens"),
        ],
    )
    def test_bad_tokens_objects(self, tokens: dict[str, Any], pointer: str) -> None:
        doc = minted_doc()
        doc["tokens"] = tokens
        with pytest.raises(SpecError) as raised:
            load_spec(doc)
        assert any(error.pointer.startswith(pointer) for error in raised.value.errors)

    def test_a_file_reference_is_read_relative_to_the_spec(self, tmp_path: Path) -> None:
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "agora.cert").write_text(CERT + "\n")
        doc = minted_doc()
        doc["tokens"] = {"appCertificate": "file:secrets/agora.cert"}
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(doc))
        spec = load_spec(path)
        assert spec.token_settings is not None
        assert spec.token_settings.certificate() == CERT
        assert CERT not in repr(spec)

    def test_a_missing_certificate_names_the_field(self) -> None:
        spec = minted_spec()
        with pytest.raises(SpecError, match=r"/tokens/appCertificate.*LS_TEST_CERT"):
            compile_layout(spec, [1], env={ENV_APP_ID: APP_ID})

    def test_a_short_lifetime_lowers_the_default_renewal(self) -> None:
        settings = minted_spec(lifetime=1800).token_settings
        assert settings is not None and settings.renew_before == 900


class TestEmulatorChecks:
    """With an App Certificate the emulator checks every rtcToken of Create and Update."""

    def emulator(self, *, strict: bool = False) -> Emulator:
        config = EmulatorConfig(app_ids=(APP_ID,), app_certificate=CERT, strict_tokens=strict)
        return Emulator(config, clock=ManualClock(1_800_000_000))

    def body(self, input_token: str, output_token: str) -> dict[str, Any]:
        compiled = compile_layout(minted_spec(), [1, 2], tokens=(input_token, output_token))
        assert compiled.body is not None
        return compiled.body

    def good_pair(self, emulator: Emulator, **changes: Any) -> tuple[str, str]:
        recipe = TokenRecipe(int(emulator.now()), 7, 3600)
        made = {
            "cert": CERT,
            "in_channel": "room7",
            "in_uid": 0,
            "out_channel": "room7-live",
            "out_uid": 9000,
            **changes,
        }
        return (
            mint_token(APP_ID, made["cert"], made["in_channel"], made["in_uid"], recipe),
            mint_token(
                APP_ID, CERT, made["out_channel"], made["out_uid"], recipe, OUTPUT_PRIVILEGES
            ),
        )

    def create(self, emulator: Emulator, body: dict[str, Any]) -> Any:
        name = emulator.acquire(APP_ID, {"instanceId": "room7-grid"}).body["tokenName"]
        return emulator.create(APP_ID, name, body)

    def test_good_tokens_pass_and_their_expiry_shows(self) -> None:
        emulator = self.emulator(strict=True)
        reply = self.create(emulator, self.body(*self.good_pair(emulator)))
        assert reply.status == 200
        view = emulator.tasks()[0]["tokens"]
        assert view["problems"] == [] and view["expired"] == []
        assert view["expiresAt"] == {"input": 1_800_003_600, "output": 1_800_003_600}

    @pytest.mark.parametrize(
        ("changes", "field", "problem"),
        [
            ({"in_uid": 5}, "videoInputs/0/rtc/rtcToken", "minted for uid 5, not 0"),
            ({"out_uid": 9001}, "outputs/0/rtc/rtcToken", "minted for uid 9001, not 9000"),
            ({"in_channel": "room8"}, "audioInputs/0/rtc/rtcToken", "channel 'room8'"),
            ({"cert": OTHER_CERT}, "audioInputs/0/rtc/rtcToken", "not signed with"),
        ],
    )
    def test_bad_tokens(self, changes: dict[str, Any], field: str, problem: str) -> None:
        lenient, strict = self.emulator(), self.emulator(strict=True)
        reply = self.create(lenient, self.body(*self.good_pair(lenient, **changes)))
        assert reply.status == 200  # recorded, not refused
        problems = lenient.tasks()[0]["tokens"]["problems"]
        assert any(p["field"].endswith(field) and problem in p["problem"] for p in problems)
        assert any(e["event"] == "token_problem" for e in lenient.events())
        reply = self.create(strict, self.body(*self.good_pair(strict, **changes)))
        assert reply.status == 400
        assert field in reply.body["message"] and problem in reply.body["message"]
        assert strict.tasks() == []

    def test_a_literal_and_an_expired_token(self) -> None:
        emulator = self.emulator(strict=True)
        reply = self.create(emulator, self.body("not-a-token", self.good_pair(emulator)[1]))
        assert reply.status == 400 and "not an AccessToken2" in reply.body["message"]
        old = self.good_pair(emulator)
        emulator.advance_clock(3600)
        reply = self.create(emulator, self.body(*old))
        assert reply.status == 400 and "expired 0 s ago" in reply.body["message"]

    def test_an_applied_token_that_expires_is_recorded(self) -> None:
        emulator = self.emulator()
        self.create(emulator, self.body(*self.good_pair(emulator)))
        emulator.advance_clock(3599)
        assert emulator.tasks()[0]["tokens"]["problems"] == []
        emulator.advance_clock(1)
        view = emulator.tasks()[0]["tokens"]
        assert view["expired"] == ["input", "output"]
        assert {p["field"] for p in view["problems"]} == {"input", "output"}

    def test_an_update_is_checked_too(self) -> None:
        emulator = self.emulator(strict=True)
        good = self.good_pair(emulator)
        name = emulator.acquire(APP_ID, {"instanceId": "room7-grid"}).body["tokenName"]
        task_id = emulator.create(APP_ID, name, self.body(*good)).body["taskId"]
        bad = self.good_pair(emulator, in_uid=77)
        reply = emulator.update(
            APP_ID,
            task_id,
            name,
            "0",
            "services.cloudTranscoder.config",
            self.body(bad[0], good[1]),
        )
        assert reply.status == 400 and "uid 77" in reply.body["message"]

    def test_the_cli_flags(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from layoutsync.cli import build_parser

        monkeypatch.setenv("EMU_CERT", CERT)
        args = build_parser().parse_args(
            ["emulator", "--app-certificate", "env:EMU_CERT", "--strict-tokens"]
        )
        config = build_config(args)
        assert config.app_certificate == CERT and config.strict_tokens
        assert CERT not in repr(config)
        with pytest.raises(ValueError, match="32 hexadecimal"):
            EmulatorConfig(app_certificate="short")


# --- sessions -----------------------------------------------------------------------------------


class Run:
    """A session over the emulator (checking tokens, strict) on one virtual clock."""

    def __init__(self, tmp_path: Path, spec: LayoutSpec, *, strict: bool = True) -> None:
        self.emulated = Emulated(app_ids=(APP_ID,), app_certificate=CERT, strict_tokens=strict)
        self.emulator = self.emulated.emulator
        self.path = tmp_path / "state.db"
        self.store = SqliteStore(self.path, synchronous="OFF")
        self.client = self.emulated.client()
        self.client.app_id = APP_ID
        self.spec = spec
        self.session = self.open()

    def open(self) -> Session:
        return Session(
            self.spec,
            client=self.client,
            store=self.store,
            clock=self.emulator.now,
            sleep=no_wait,
            tokens=minter(self.spec),
        )

    def live(self) -> dict[str, Any]:
        (task,) = self.emulator.tasks()
        config = self.emulator.live_config(task["taskId"])
        assert config is not None
        return config

    def state_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.path.parent.glob("state.db*"))

    def close(self) -> None:
        self.store.close()
        self.emulated.close()


@pytest.fixture
def run(tmp_path: Path) -> Any:
    made: list[Run] = []

    def make(spec: LayoutSpec | None = None, **options: Any) -> Run:
        made.append(Run(tmp_path, spec or minted_spec(), **options))
        return made[-1]

    yield make
    for item in made:
        item.close()


class TestSessionTokens:
    """A task's tokens are minted at Create and kept; input tokens are renewed by Update."""

    def test_restart_reconcile_and_reload_keep_the_tokens(self, run: Any) -> None:
        r = run()
        r.session.set_hosts([1, 2])
        assert r.session.reconcile().raise_for_error().calls == ("acquire", "create")
        before = tokens_of(r.live())
        again = r.open()  # a restart: a new process, the same state file
        again.set_hosts([1, 2])
        assert again.plan().action == "noop"
        assert again.reconcile().calls == ()
        again.replace_spec(load_spec({**minted_doc(), "layout": {"gap": 4}}))  # a reload
        again.set_hosts([1, 2, 3])
        assert again.reconcile().raise_for_error().calls == ("update",)
        assert tokens_of(r.live()) == before

    def test_no_token_at_rest_only_the_recipe(self, run: Any) -> None:
        r = run()
        r.session.set_hosts([1, 2])
        r.session.reconcile().raise_for_error()
        input_tokens, output_token = tokens_of(r.live())
        stored = r.state_bytes()
        for token in (*input_tokens, output_token):
            assert token.encode() not in stored
        assert CERT.encode() not in stored
        recipes = TaskTokens.from_json(r.store.load("room7-grid").tokens)
        assert recipes is not None and recipes.input.issued_at == int(r.emulator.now())

    def test_renewal_is_an_update_shown_in_the_plan(self, run: Any) -> None:
        r = run()
        r.session.set_hosts([1, 2])
        created = r.session.reconcile().raise_for_error()
        assert created.requeue_after == DAY - 3600
        _, output_token = tokens_of(r.live())
        r.emulator.advance_clock(DAY - 3600)
        plan = r.session.plan()
        assert plan.action == "update"
        assert plan.reasons[0].startswith("input token renewed, expires ")
        assert any(
            reason.startswith("live task's tokens: input token expires") for reason in plan.reasons
        )
        assert "(sensitive value)" in plan.render() and "007e" not in plan.render()
        result = r.session.reconcile().raise_for_error()
        assert result.calls == ("update",)
        inputs, output = tokens_of(r.live())
        assert output == output_token  # outputs[].rtc is not updatable: the same token
        (renewed,) = inputs
        assert parse(renewed)["issued_at"] == int(r.emulator.now())
        assert r.emulator.tasks()[0]["tokens"]["problems"] == []
        assert r.session.status().token_expiry == {
            "input": int(r.emulator.now()) + DAY,
            "output": int(r.emulator.now()) + 3600,
        }

    def test_a_replacement_mints_new_tokens(self, run: Any) -> None:
        r = run()
        r.session.set_hosts([1])
        r.session.reconcile().raise_for_error()
        _, old_output = tokens_of(r.live())
        r.emulator.advance_clock(600)
        r.session.replace_spec(load_spec({**minted_doc(), "canvas": {"color": 255}}))
        result = r.session.reconcile().raise_for_error()
        assert result.action == "replace" and result.calls[:2] == ("delete", "acquire")
        _, new_output = tokens_of(r.live())
        assert new_output != old_output
        assert parse(new_output)["issued_at"] == int(r.emulator.now())

    def test_a_rotated_certificate_replaces_the_task(self, run: Any) -> None:
        r = run()
        environ = dict(ENV)
        assert r.spec.token_settings is not None
        rotating = TokenMinter(r.spec.token_settings, app_id=APP_ID, environ=environ)
        session = Session(
            r.spec,
            client=r.client,
            store=r.store,
            clock=r.emulator.now,
            sleep=no_wait,
            tokens=rotating,
        )
        session.set_hosts([1])
        session.reconcile().raise_for_error()
        environ["LS_TEST_CERT"] = OTHER_CERT
        assert session.plan().action == "noop"  # the noop fast path does not compile
        session.set_hosts([1, 2])
        plan = session.plan()
        assert plan.action == "replace"
        assert plan.replace_paths == ("outputs/room7-live:9000/rtc/rtcToken",)

    def test_compile_masks_without_the_certificate(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(minted_doc()))
        monkeypatch.delenv("LS_TEST_CERT", raising=False)
        assert main(["compile", str(path), "--hosts", "1,2"]) == 0
        assert '"rtcToken": "***"' in capsys.readouterr().out
        monkeypatch.setenv("LS_TEST_CERT", CERT)
        monkeypatch.setenv(ENV_APP_ID, APP_ID)
        assert main(["compile", str(path), "--hosts", "1", "--show-secrets"]) == 0
        body = json.loads(capsys.readouterr().out)
        output = body["services"]["cloudTranscoder"]["config"]["transcoder"]["outputs"][0]
        assert parse(output["rtc"]["rtcToken"])["uid"] == 9000

    def test_a_spec_without_tokens_is_untouched(self) -> None:
        spec = load_spec(GRID)
        session = Session(spec, store=MemoryStore(), clock=Clock())
        session.set_hosts([1])
        assert "token" not in " ".join(session.plan().reasons)


class TestSevenDays:
    """Seven days on the emulator's virtual clock, woken as a daemon would (hourly resync,
    or sooner when the result asks): input tokens renewed by Updates; the output token
    warned of (default) or the task replaced before it expires (opt-in)."""

    def week(self, r: Run) -> dict[str, Any]:
        start = r.emulator.now()
        hosts = [1, 2]
        session = r.session
        session.set_hosts(hosts)
        figures = {"reconciles": 0, "renewals": 0, "replacements": 0, "host_updates": 0}
        next_churn = start + 6 * 3600
        with capture_logs() as logs:
            while r.emulator.now() < start + 7 * DAY:
                result = session.reconcile().raise_for_error()
                figures["reconciles"] += 1
                reasons = " ".join(result.plan.reasons) if result.plan else ""
                if result.action == "update" and "input token renewed" in reasons:
                    figures["renewals"] += 1
                elif result.action == "update":
                    figures["host_updates"] += 1
                elif result.action == "replace":
                    figures["replacements"] += 1
                now = r.emulator.now()
                wake = min(3600.0, result.requeue_after or 3600.0, next_churn - now)
                r.emulator.advance_clock(max(wake, 1.0))
                if r.emulator.now() >= next_churn:
                    hosts = [1, 2, 3] if len(hosts) == 2 else [1, 2]
                    session.set_hosts(hosts)
                    next_churn += 6 * 3600
        problems = [e for e in r.emulator.events() if e["event"] == "token_problem"]
        figures["problems"] = problems
        figures["creates"] = len(r.emulator.requests("create"))
        figures["deletes"] = len(r.emulator.requests("delete"))
        figures["logs"] = logs
        text = json.dumps(logs, default=str) + repr(session.status())
        live = r.live()
        for token in (*tokens_of(live)[0], tokens_of(live)[1]):
            assert token not in text
            assert token.encode() not in r.state_bytes()
        assert "007e" not in text
        return figures

    def test_default_renews_inputs_by_update_and_warns_of_the_output(self, run: Any) -> None:
        figures = self.week(run(strict=False))
        assert figures["creates"] == 1 and figures["deletes"] == 0
        assert figures["replacements"] == 0
        assert figures["renewals"] == 7  # at 23 h, 46 h, ... 161 h
        assert figures["host_updates"] == 26  # 27 host changes; the one at 138 h rides a renewal
        # the input tokens never lapse; the output token does, after 24 h, and is warned of
        assert [(p["field"], p["call"]) for p in figures["problems"]] == [("output", "clock")]
        assert figures["problems"][0]["time"] == pytest.approx(1_700_000_000 + DAY, abs=3600)
        warned = [e for e in figures["logs"] if e["event"] == "tokens.output_expiring"]
        assert warned and warned[0]["log_level"] == "warning"

    def test_opt_in_replacement_keeps_every_token_valid(self, run: Any) -> None:
        figures = self.week(run(minted_spec(outputExpiry="replace")))
        assert figures["problems"] == []
        assert figures["replacements"] == 7 and figures["renewals"] == 0
        assert figures["creates"] == 8 and figures["deletes"] == 7


class TestDaemon:
    """The daemon's sessions take an injected clock; a renewal is queued, then an Update."""

    @pytest.mark.anyio
    async def test_the_renewal_is_queued_and_sent_as_an_update(self, tmp_path: Path) -> None:
        import httpx

        from layoutsync.api.client import RetryPolicy
        from layoutsync.apply import AsyncSession
        from layoutsync.daemon.metrics import DaemonMetrics
        from layoutsync.daemon.runtime import Daemon, DaemonSettings, build_client
        from layoutsync.emulator import DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET, create_app

        emulator = Emulator(
            EmulatorConfig(app_ids=(APP_ID,), app_certificate=CERT, strict_tokens=True),
            clock=ManualClock(1_800_000_000),
        )
        specs = tmp_path / "specs"
        specs.mkdir()
        (specs / "lobby.json").write_text(json.dumps(minted_doc()))
        settings = DaemonSettings(
            config=specs,
            state=tmp_path / "state.db",
            debounce=0.01,
            watch=False,
            qps=1000.0,
            burst=1000,
        )
        metrics = DaemonMetrics(process=False)
        client = build_client(
            settings,
            metrics,
            transport=httpx.ASGITransport(app=create_app(emulator=emulator)),
            base_url="http://emulator.test",
            app_id=APP_ID,
            customer_key=DEFAULT_CUSTOMER_KEY,
            customer_secret=DEFAULT_CUSTOMER_SECRET,
            retry=RetryPolicy(delays=()),
        )

        def session(spec: LayoutSpec, **options: Any) -> AsyncSession:
            return AsyncSession(spec, clock=emulator.now, tokens=minter(spec), **options)

        store = SqliteStore(tmp_path / "state.db", synchronous="OFF")
        daemon = Daemon(settings, client=client, store=store, session_factory=session)
        daemon.load()
        daemon.set_hosts("lobby", [1, 2])
        daemon.queue.forget("lobby")
        await daemon._process("lobby")  # what a worker does with a queued key
        created = daemon.get("lobby").last_result
        assert created is not None and created.calls == ("acquire", "create")
        assert created.requeue_after == DAY - 3600
        assert daemon.pending("lobby")["queued"]  # again, at the renewal
        emulator.advance_clock(DAY - 3600)
        renewed = await daemon.reconcile_now("lobby")
        assert renewed is not None and renewed.calls == ("update",)
        assert renewed.requeue_after == pytest.approx(3600)  # the output token's warning
        assert emulator.tasks()[0]["tokens"]["problems"] == []
        store.close()


class TestCommandLine:
    """`layoutsync apply` and `plan` mint tokens a strict `layoutsync emulator
    --app-certificate` process accepts, and show when they expire."""

    def test_apply_then_plan(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from _sessionkit import emulator_process

        flags = ("--app-id", APP_ID, "--app-certificate", "env:LS_TEST_CERT", "--strict-tokens")
        monkeypatch.setenv("LS_TEST_CERT", CERT)
        with emulator_process(*flags) as emulator:
            monkeypatch.chdir(tmp_path)
            for name, value in {**emulator.env, ENV_APP_ID: APP_ID}.items():
                monkeypatch.setenv(name, value)
            (tmp_path / "spec.json").write_text(json.dumps(minted_doc()))
            assert main(["apply", "spec.json", "--hosts", "101,102"]) == 0
            out, err = capsys.readouterr()
            assert "calls sent: acquire, create" in out, out + err
            (task,) = emulator.tasks()
            assert task["tokens"]["problems"] == [] and task["tokens"]["expired"] == []
            assert main(["plan", "spec.json", "--hosts", "101,102"]) == 0
            out, _ = capsys.readouterr()
            assert out.startswith("No changes.")
            assert "live task's tokens: input token expires" in out and "007e" not in out
