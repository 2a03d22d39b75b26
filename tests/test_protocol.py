"""The sans-IO core: request builders, ``interpret``, and the retry table/state machine.

Table-driven like h11's test_io: (call, status, headers, body) -> result or
exception class, and for the retry machine, scripted answers -> the exact
requests it asks for. Nothing here opens a socket or sleeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from layoutsync.api._retry import (
    TABLE,
    Action,
    Done,
    Outcome,
    Phase,
    RetryMachine,
    RetryPolicy,
    Send,
    decide,
    outcome_of,
)
from layoutsync.api.models import Accepted, BuilderToken, Call, Task, Updated
from layoutsync.api.protocol import (
    UPDATE_MASK,
    MalformedResponse,
    Request,
    build_acquire,
    build_create,
    build_delete,
    build_query,
    build_update,
    conflicting_task_id,
    interpret,
    request_id_of,
)
from layoutsync.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InstanceConflict,
    RateLimited,
    RequestTimeout,
    ServerError,
    TaskNotFound,
    TransportError,
    Unauthorized,
    ValidationError,
)

APP = "app1"
TOKEN = "btok-SECRET-1234"
TASK = "609f28f2644f1ae1ceb041b7047e3abc"
BODY = {
    "services": {
        "cloudTranscoder": {
            "serviceType": "cloudTranscoderV2",
            "config": {"transcoder": {"audioInputs": [{"rtc": {"rtcToken": "rtc-SECRET-99"}}]}},
        }
    }
}
BASE = f"/v1/projects/{APP}/rtsc/cloud-transcoder"


def task_body(status: str = "IN_PROGRESS", **extra: Any) -> bytes:
    """A task object like the vendor page's examples."""
    body: dict[str, Any] = {
        "createTs": 1661420011,
        "eventHandlers": {},
        "execution": {"workflows": {}},
        "properties": {},
        "sequenceId": "0",
        "services": {
            "cloudTranscoder": {
                "config": {},
                "createTs": 1661420011,
                "message": "OnSlaveServiceQueryUpdated",
                "serviceType": "cloudTranscoderV2",
                "status": "serviceInProgress",
            }
        },
        "status": status,
        "taskId": TASK,
        "variables": {},
        "workflows": {},
    }
    body.update(extra)
    return orjson.dumps(body)


TOKEN_BODY = orjson.dumps({"createTs": 1661324606, "instanceId": "abc13328", "tokenName": TOKEN})
RID = {"X-Request-ID": "req-1"}


def error_body(message: str, **extra: Any) -> bytes:
    return orjson.dumps({"message": message, **extra})


class TestBuilders:
    """Each builder produces the vendor's method, path, query, headers and body."""

    def test_acquire(self) -> None:
        request = build_acquire(APP, "abc13328")
        assert (request.call, request.method, request.path) == (
            Call.ACQUIRE,
            "POST",
            f"{BASE}/builderTokens",
        )
        assert request.query == ()
        assert dict(request.headers) == {"Content-Type": "application/json"}
        assert orjson.loads(request.content) == {"instanceId": "abc13328"}

    def test_create(self) -> None:
        request = build_create(APP, TOKEN, BODY)
        assert (request.method, request.path, request.query) == (
            "POST",
            f"{BASE}/tasks",
            (("builderToken", TOKEN),),
        )
        assert orjson.loads(request.content) == BODY == request.json()
        assert request.builder_token == TOKEN and request.task_id is None
        assert build_query(APP, TASK, TOKEN).json() is None

    def test_query(self) -> None:
        request = build_query(APP, TASK, TOKEN)
        assert (request.method, request.path, request.query, request.content) == (
            "GET",
            f"{BASE}/tasks/{TASK}",
            (("builderToken", TOKEN),),
            b"",
        )

    def test_update(self) -> None:
        request = build_update(APP, TASK, TOKEN, 7, BODY)
        assert (request.method, request.path) == ("PATCH", f"{BASE}/tasks/{TASK}")
        assert request.query == (
            ("builderToken", TOKEN),
            ("sequenceId", "7"),
            ("updateMask", UPDATE_MASK),
        )
        assert UPDATE_MASK == "services.cloudTranscoder.config"
        assert orjson.loads(request.content) == BODY

    def test_delete(self) -> None:
        request = build_delete(APP, TASK, TOKEN)
        assert (request.method, request.path, request.content) == (
            "DELETE",
            f"{BASE}/tasks/{TASK}",
            b"",
        )

    def test_path_segments_are_quoted(self) -> None:
        assert build_query("a/b", "t?1", TOKEN).path == (
            "/v1/projects/a%2Fb/rtsc/cloud-transcoder/tasks/t%3F1"
        )

    def test_target_has_the_encoded_query(self) -> None:
        request = build_update(APP, TASK, "a+b/c", 0, BODY)
        assert request.target == (
            f"{BASE}/tasks/{TASK}?builderToken=a%2Bb%2Fc&sequenceId=0"
            "&updateMask=services.cloudTranscoder.config"
        )

    def test_requests_are_frozen_values(self) -> None:
        assert build_update(APP, TASK, TOKEN, 1, BODY) == build_update(APP, TASK, TOKEN, 1, BODY)
        with pytest.raises(dataclasses.FrozenInstanceError):
            build_query(APP, TASK, TOKEN).path = "/x"  # type: ignore[misc]

    def test_repr_masks_the_token_and_omits_the_body(self) -> None:
        request = build_update(APP, TASK, TOKEN, 3, BODY)
        text = repr(request)
        assert TOKEN not in text and "rtc-SECRET" not in text
        assert "builderToken=***" in text and "sequenceId=3" in text
        assert request.masked_query()["builderToken"] == "***"

    @pytest.mark.parametrize(
        ("build", "pointer"),
        [
            (lambda: build_acquire(APP, ""), "/instanceId"),
            (lambda: build_acquire(APP, "x" * 65), "/instanceId"),
            (lambda: build_acquire(APP, "has space"), "/instanceId"),
            (lambda: build_acquire(APP, "ünïcode"), "/instanceId"),
            (lambda: build_acquire("", "ok"), "appId"),
            (lambda: build_create(APP, "", BODY), "builderToken"),
            (lambda: build_create(APP, TOKEN, [1, 2]), ""),  # type: ignore[arg-type]
            (lambda: build_create(APP, TOKEN, {"x": {1, 2}}), ""),
            (lambda: build_query(APP, "", TOKEN), "taskId"),
            (lambda: build_update(APP, TASK, TOKEN, -1, BODY), "sequenceId"),
            (lambda: build_update(APP, TASK, TOKEN, True, BODY), "sequenceId"),
            (lambda: build_update(APP, TASK, TOKEN, "1", BODY), "sequenceId"),  # type: ignore[arg-type]
            (lambda: build_delete(APP, TASK, None), "builderToken"),  # type: ignore[arg-type]
        ],
    )
    def test_bad_input_names_the_field(self, build: Any, pointer: str) -> None:
        with pytest.raises(ValidationError) as info:
            build()
        assert info.value.errors[0].pointer == pointer

    def test_longest_allowed_instance_id(self) -> None:
        assert build_acquire(APP, "A-z_9" * 12 + "abcd").call is Call.ACQUIRE


class TestRequestId:
    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({"X-Request-ID": "a"}, "a"),
            ({"x-request-id": "b"}, "b"),
            ({"X-REQUEST-ID": "c"}, "c"),
            ([("x-Request-Id", "d")], "d"),
            ({}, None),
            ({"X-Request-ID": ""}, None),
            ([], None),
        ],
    )
    def test_any_case_and_absent(self, headers: Any, expected: str | None) -> None:
        assert request_id_of(headers) == expected


def task(
    status: str = "IN_PROGRESS",
    seq: int | None = 0,
    created: float | None = 1661420011.0,
    service: str | None = "serviceInProgress",
) -> Task:
    return Task(TASK, status, seq, created, service)


ACQUIRED = orjson.dumps({"createTs": 1.5, "instanceId": 42, "tokenName": "t"})

# (call, status, headers, body) -> the value interpret returns
SUCCESS_CASES: list[tuple[Call, int, dict[str, str], bytes, object]] = [
    (Call.ACQUIRE, 200, RID, TOKEN_BODY, BuilderToken(TOKEN, 1661324606.0, "abc13328")),
    (Call.ACQUIRE, 200, {}, ACQUIRED, BuilderToken("t", 1.5, "42")),
    # Acquire has nothing to poll: a 202 with a token is the token, without one is Accepted.
    (Call.ACQUIRE, 202, {}, ACQUIRED, BuilderToken("t", 1.5, "42")),
    (Call.ACQUIRE, 202, {}, b"", Accepted(Call.ACQUIRE, None, None)),
    (Call.CREATE, 200, RID, task_body("STARTED"), task("STARTED")),
    # 201 (deprecated "task already running") is the task too.
    (Call.CREATE, 201, {}, task_body("STARTED"), task("STARTED")),
    (Call.QUERY, 200, RID, task_body(), task()),
    (Call.DELETE, 200, RID, task_body("STOPPED"), task("STOPPED")),
    (Call.UPDATE, 200, RID, b"", Updated("req-1")),
    (Call.UPDATE, 200, {}, b"{}", Updated(None)),
    (Call.CREATE, 202, RID, b"", Accepted(Call.CREATE, "req-1", None)),
    (Call.CREATE, 202, RID, orjson.dumps({"taskId": TASK}), Accepted(Call.CREATE, "req-1", TASK)),
    (Call.UPDATE, 202, {}, b"", Accepted(Call.UPDATE, None, None)),
    (Call.DELETE, 202, {}, b"not json", Accepted(Call.DELETE, None, None)),
    (Call.QUERY, 202, {}, b"", Accepted(Call.QUERY, None, None)),
    # sequenceId: the documented string, an int, or something else.
    (Call.QUERY, 200, {}, task_body(sequenceId=4), task(seq=4)),
    (Call.QUERY, 200, {}, task_body(sequenceId="x"), task(seq=None)),
    (Call.QUERY, 200, {}, task_body(sequenceId=None), task(seq=None)),
    (Call.QUERY, 200, {}, task_body(createTs="?", services=[]), task(created=None, service=None)),
]  # fmt: skip


@pytest.mark.parametrize(("call", "status", "headers", "body", "expected"), SUCCESS_CASES)
def test_interpret_success(
    call: Call, status: int, headers: dict[str, str], body: bytes, expected: object
) -> None:
    result = interpret(call, status, headers, body)
    assert result == expected
    assert type(result) is type(expected)
    if isinstance(result, BuilderToken | Task):
        assert result.request_id == headers.get("X-Request-ID")


# (call, status, body) -> the exception class interpret raises
ERROR_CASES: list[tuple[Call, int, bytes, type[Exception]]] = [
    (Call.CREATE, 400, error_body("invalid /services/.../canvas/width"), BadRequest),
    (Call.ACQUIRE, 401, error_body("bad Authorization"), Unauthorized),
    (Call.ACQUIRE, 403, error_body("appId not enabled"), Forbidden),
    (Call.QUERY, 404, error_body("task not found"), TaskNotFound),
    (Call.UPDATE, 404, b"", TaskNotFound),
    (Call.CREATE, 409, error_body("conflict", taskId=TASK), InstanceConflict),
    (Call.UPDATE, 429, error_body("too many requests"), RateLimited),
    (Call.DELETE, 500, error_body("unknown"), ServerError),
    (Call.DELETE, 501, error_body("not implemented"), ServerError),
    (Call.QUERY, 503, b"<html>overloaded</html>", ServerError),
    (Call.QUERY, 504, b"", ServerError),
    (Call.QUERY, 418, error_body("teapot"), ApiError),
    (Call.QUERY, 302, b"", ApiError),
    # 2xx bodies that are not what the call returns
    (Call.ACQUIRE, 200, b"", MalformedResponse),
    (Call.ACQUIRE, 200, orjson.dumps({"tokenName": "", "createTs": 1, "instanceId": "a"}),
     MalformedResponse),
    (Call.ACQUIRE, 200, orjson.dumps({"tokenName": "t", "createTs": True, "instanceId": "a"}),
     MalformedResponse),
    (Call.CREATE, 200, b"[]", MalformedResponse),
    (Call.QUERY, 200, orjson.dumps({"status": "STARTED"}), MalformedResponse),
    (Call.DELETE, 200, b"", MalformedResponse),
    (Call.DELETE, 204, b"", MalformedResponse),
]  # fmt: skip


@pytest.mark.parametrize(("call", "status", "body", "expected"), ERROR_CASES)
def test_interpret_errors(call: Call, status: int, body: bytes, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info:
        interpret(call, status, {"x-request-id": "rid-9"}, body)
    assert type(info.value) is expected
    assert info.value.call == call  # type: ignore[attr-defined]
    if isinstance(info.value, ApiError):
        assert info.value.status_code == status
        assert info.value.request_id == "rid-9"
        assert "rid-9" in str(info.value)


class TestErrorDetails:
    def test_message_is_kept_for_logs(self) -> None:
        with pytest.raises(BadRequest) as info:
            interpret(Call.CREATE, 400, {}, error_body("canvas/width: 100 is below 120"))
        assert info.value.message == "canvas/width: 100 is below 120"
        assert info.value.request_id is None
        assert str(info.value) == (
            "create failed with 400 BadRequest: canvas/width: 100 is below 120"
        )

    def test_non_json_body_becomes_the_message(self) -> None:
        with pytest.raises(ServerError) as info:
            interpret(Call.QUERY, 502, {}, b"  <html>Bad gateway</html>\n" + b"x" * 2000)
        assert info.value.message.startswith("<html>Bad gateway</html>")
        assert len(info.value.message) <= 500
        assert info.value.body is None

    def test_body_is_redacted(self) -> None:
        with pytest.raises(BadRequest) as info:
            interpret(Call.CREATE, 400, {}, error_body("bad", builderToken=TOKEN, field="x"))
        assert info.value.body == {"message": "bad", "builderToken": "***", "field": "x"}

    def test_echoed_secrets_are_scrubbed(self) -> None:
        """A server that echoes the builderToken or an rtcToken never puts it in str(exc)."""
        request = build_update(APP, TASK, TOKEN, 1, BODY)
        message = f"token {TOKEN} or rtcToken rtc-SECRET-99 is invalid"
        with pytest.raises(BadRequest) as info:
            interpret(Call.UPDATE, 400, {}, error_body(message), request=request)
        text = str(info.value) + repr(info.value) + info.value.message
        assert TOKEN not in text and "rtc-SECRET-99" not in text
        assert info.value.message == "token *** or rtcToken *** is invalid"

    def test_conflicting_task_id(self) -> None:
        def error(body: bytes) -> ApiError:
            with pytest.raises(InstanceConflict) as info:
                interpret(Call.CREATE, 409, {}, body)
            return info.value

        assert conflicting_task_id(error(error_body("x", taskId=TASK))) == TASK
        assert conflicting_task_id(error(error_body("x"))) is None
        assert conflicting_task_id(error(error_body("x", taskId=""))) is None
        assert conflicting_task_id(error(b"oops")) is None


class TestResults:
    def test_builder_token_repr_hides_the_token(self) -> None:
        token = interpret(Call.ACQUIRE, 200, {}, TOKEN_BODY)
        assert isinstance(token, BuilderToken)
        assert TOKEN not in repr(token) and TOKEN not in str(token)
        assert token.token == TOKEN
        assert token.expires_at == 1661324606.0 + 300

    def test_task_raw_is_hidden_and_read_only(self) -> None:
        body = orjson.loads(task_body())
        body["services"]["cloudTranscoder"]["config"] = {"transcoder": {"x": {"rtcToken": "S3"}}}
        task = interpret(Call.QUERY, 200, {}, orjson.dumps(body))
        assert isinstance(task, Task)
        assert "S3" not in repr(task)
        assert task.raw["taskId"] == TASK
        with pytest.raises(TypeError):
            task.raw["taskId"] = "other"  # type: ignore[index]
        hash(task)

    @pytest.mark.parametrize(
        ("status", "ended"),
        [("IN_PROGRESS", False), ("STARTED", False), ("STOPPING", True), ("STOPPED", True),
         ("EXIT", True), ("FAILURE_STOP", True)],
    )  # fmt: skip
    def test_ended(self, status: str, ended: bool) -> None:
        task = interpret(Call.QUERY, 200, {}, task_body(status))
        assert isinstance(task, Task) and task.ended is ended

    def test_results_are_slotted(self) -> None:
        for value in (Updated(None), Accepted(Call.QUERY, None), BuilderToken("t", 1.0, "i")):
            assert not hasattr(value, "__dict__")


# --- the retry table ------------------------------------------------------------


class TestTable:
    def test_every_row_covers_every_outcome(self) -> None:
        for key, row in TABLE.items():
            assert set(row) == set(Outcome), key

    def test_only_task_calls_check_or_confirm(self) -> None:
        for call, phase in TABLE:
            if phase in (Phase.CHECK, Phase.CONFIRM):
                assert call in (Call.UPDATE, Call.DELETE)
            if phase is Phase.ADOPT:
                assert call is Call.CREATE

    @pytest.mark.parametrize("call", list(Call))
    @pytest.mark.parametrize("outcome", [Outcome.FATAL, Outcome.CONFLICT])
    def test_bad_request_auth_and_plain_conflict_are_never_retried(
        self, call: Call, outcome: Outcome
    ) -> None:
        assert decide(call, Phase.SEND, outcome) is Action.RAISE

    @pytest.mark.parametrize("call", list(Call))
    def test_transient_failures_back_off(self, call: Call) -> None:
        assert decide(call, Phase.SEND, Outcome.TRANSIENT).name.startswith("BACKOFF_")

    @pytest.mark.parametrize(
        ("call", "phase"),
        [(Call.QUERY, Phase.SEND), (Call.UPDATE, Phase.SEND), (Call.DELETE, Phase.SEND),
         (Call.UPDATE, Phase.CHECK), (Call.UPDATE, Phase.CONFIRM), (Call.DELETE, Phase.CONFIRM)],
    )  # fmt: skip
    def test_404_is_doubted_unless_told_not_to(self, call: Call, phase: Phase) -> None:
        assert decide(call, phase, Outcome.NOT_FOUND) in (
            Action.BACKOFF_CONFIRM,
            Action.BACKOFF_RESEND,
        )
        assert decide(call, phase, Outcome.NOT_FOUND, confirm_missing=False) is Action.RAISE

    def test_create_adopts_a_409_naming_the_task(self) -> None:
        assert decide(Call.CREATE, Phase.SEND, Outcome.CONFLICT_NAMES_TASK) is Action.ADOPT
        assert decide(Call.CREATE, Phase.ADOPT, Outcome.OK) is Action.RETURN
        assert decide(Call.CREATE, Phase.ADOPT, Outcome.FATAL) is Action.RAISE_CONFLICT

    @pytest.mark.parametrize(
        ("value", "outcome"),
        [
            (Task(TASK, "IN_PROGRESS", 0, 1.0, None), Outcome.OK),
            (Task(TASK, "STOPPED", 0, 1.0, None), Outcome.ENDED),
            (Updated(None), Outcome.OK),
            (BuilderToken("t", 1.0, "i"), Outcome.OK),
            (Accepted(Call.UPDATE, None), Outcome.ACCEPTED),
            (TaskNotFound(call="query", status_code=404), Outcome.NOT_FOUND),
            (InstanceConflict(call="create", status_code=409), Outcome.CONFLICT),
            (
                InstanceConflict(call="create", status_code=409, body={"taskId": "t"}),
                Outcome.CONFLICT_NAMES_TASK,
            ),
            (RateLimited(call="update", status_code=429), Outcome.TRANSIENT),
            (ServerError(call="update", status_code=503), Outcome.TRANSIENT),
            (BadRequest(call="update", status_code=400), Outcome.FATAL),
            (Unauthorized(call="update", status_code=401), Outcome.FATAL),
            (Forbidden(call="update", status_code=403), Outcome.FATAL),
            (RequestTimeout("t", call="update"), Outcome.TRANSIENT),
            (TransportError("reset", call="update"), Outcome.TRANSIENT),
            (MalformedResponse("bad", call="query"), Outcome.FATAL),
        ],
    )
    def test_outcome_of(self, value: object, outcome: Outcome) -> None:
        assert outcome_of(value) is outcome  # type: ignore[arg-type]


class TestRetryPolicy:
    def test_defaults_follow_the_vendor(self) -> None:
        policy = RetryPolicy()
        assert policy.delays == (5.0, 10.0, 15.0)
        assert policy.jitter == 0.2

    @pytest.mark.parametrize(("random", "expected"), [(0.0, 4.0), (0.5, 5.0), (0.999999, 6.0)])
    def test_jitter_bounds(self, random: float, expected: float) -> None:
        policy = RetryPolicy(random=lambda: random)
        assert policy.delay(0) == pytest.approx(expected, abs=1e-4)

    def test_spent(self) -> None:
        policy = RetryPolicy(delays=(1, 2), jitter=0)
        assert [policy.delay(i) for i in range(3)] == [1.0, 2.0, None]
        assert RetryPolicy(delays=()).delay(0) is None

    @pytest.mark.parametrize(
        "kwargs",
        [{"delays": (-1.0,)}, {"delays": (float("nan"),)}, {"delays": ("5",)}, {"jitter": 1.5},
         {"jitter": -0.1}, {"delays": (True,)}],
    )  # fmt: skip
    def test_invalid(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="RetryPolicy"):
            RetryPolicy(**kwargs)


# --- the machine, scripted --------------------------------------------------------

# An answer: (status, body) from the service, or an exception instance for "no response".
Answer = tuple[int, bytes] | Exception
# What the machine must ask for next: (call sent, phase, delay before it).
Expect = tuple[Call, Phase, float]

OK_TASK = (200, task_body())
STOPPED = (200, task_body("STOPPED"))
NOT_FOUND = (404, error_body("no such task"))
UNAVAILABLE = (503, error_body("overloaded"))
LIMITED = (429, error_body("slow down"))
TIMEOUT = RequestTimeout("read timed out", call="x")
DROPPED = TransportError("connection aborted", call="x")
POLICY = RetryPolicy(delays=(5.0, 10.0, 15.0), jitter=0.0)


def run(
    request: Request,
    script: Sequence[tuple[Answer, Expect | None]],
    *,
    confirm_missing: bool = True,
) -> tuple[Any, RetryMachine]:
    """Feed ``script`` answers; each pairs with the request the machine must ask for next."""
    machine = RetryMachine(request, POLICY, confirm_missing=confirm_missing)
    step: Send | Done = machine.start()
    assert isinstance(step, Send) and step.request is request and step.delay == 0
    for answer, expect in script:
        assert isinstance(step, Send)
        if isinstance(answer, Exception):
            step = machine.receive_error(answer)
        else:
            step = machine.receive_response(answer[0], RID, answer[1])
        if expect is None:
            assert isinstance(step, Done)
            return step.result, machine
        assert isinstance(step, Send), step
        assert (step.request.call, step.phase, step.delay) == expect
    raise AssertionError("script ended without a result")


UPDATE = build_update(APP, TASK, TOKEN, 5, BODY)
DELETE = build_delete(APP, TASK, TOKEN)
QUERY = build_query(APP, TASK, TOKEN)
CREATE = build_create(APP, TOKEN, BODY)
ACQUIRE = build_acquire(APP, "abc13328")


class TestMachine:
    def test_first_answer_success_sends_once(self) -> None:
        result, machine = run(UPDATE, [((200, b""), None)])
        assert result == Updated("req-1") and machine.attempt == 1

    def test_update_after_503_checks_then_resends_the_same_request(self) -> None:
        machine = RetryMachine(UPDATE, POLICY)
        machine.start()
        step = machine.receive_response(*UNAVAILABLE[:1], {}, UNAVAILABLE[1])
        assert isinstance(step, Send) and step.phase is Phase.CHECK and step.delay == 5.0
        assert step.request == QUERY
        step = machine.receive_response(200, {}, task_body())
        assert isinstance(step, Send) and step.request is UPDATE and step.delay == 0
        assert step.request.query[1] == ("sequenceId", "5")

    @pytest.mark.parametrize(
        "failure", [UNAVAILABLE, LIMITED, TIMEOUT, DROPPED, (500, b""), (504, b"")]
    )
    def test_update_transient_then_ok(self, failure: Answer) -> None:
        result, _ = run(
            UPDATE,
            [
                (failure, (Call.QUERY, Phase.CHECK, 5.0)),
                (OK_TASK, (Call.UPDATE, Phase.SEND, 0.0)),
                ((200, b""), None),
            ],
        )
        assert result == Updated("req-1")

    def test_update_keeps_failing_raises_the_last_error(self) -> None:
        with pytest.raises(RateLimited):
            run(
                UPDATE,
                [
                    (UNAVAILABLE, (Call.QUERY, Phase.CHECK, 5.0)),
                    (OK_TASK, (Call.UPDATE, Phase.SEND, 0.0)),
                    (TIMEOUT, (Call.QUERY, Phase.CHECK, 10.0)),
                    (OK_TASK, (Call.UPDATE, Phase.SEND, 0.0)),
                    (UNAVAILABLE, (Call.QUERY, Phase.CHECK, 15.0)),
                    (OK_TASK, (Call.UPDATE, Phase.SEND, 0.0)),
                    (LIMITED, None),
                ],
            )

    def test_check_query_failing_transiently_backs_off_again(self) -> None:
        result, _ = run(
            UPDATE,
            [
                (UNAVAILABLE, (Call.QUERY, Phase.CHECK, 5.0)),
                (UNAVAILABLE, (Call.QUERY, Phase.CHECK, 10.0)),
                ((202, b""), (Call.QUERY, Phase.CHECK, 15.0)),
                (OK_TASK, (Call.UPDATE, Phase.SEND, 0.0)),
                ((200, b""), None),
            ],
        )
        assert isinstance(result, Updated)

    def test_update_404_is_confirmed_before_it_is_believed(self) -> None:
        with pytest.raises(TaskNotFound) as info:
            run(
                UPDATE,
                [
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 5.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 10.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 15.0)),
                    (NOT_FOUND, None),
                ],
            )
        assert info.value.call == "query"

    def test_update_spurious_404_resends(self) -> None:
        result, machine = run(
            UPDATE,
            [
                (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 5.0)),
                (OK_TASK, (Call.UPDATE, Phase.SEND, 0.0)),
                ((200, b""), None),
            ],
        )
        assert isinstance(result, Updated) and machine.attempt == 3

    def test_update_404_without_confirmation(self) -> None:
        with pytest.raises(TaskNotFound):
            run(UPDATE, [(NOT_FOUND, None)], confirm_missing=False)

    def test_update_transient_then_check_404_is_confirmed(self) -> None:
        with pytest.raises(TaskNotFound):
            run(
                UPDATE,
                [
                    (UNAVAILABLE, (Call.QUERY, Phase.CHECK, 5.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 10.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 15.0)),
                    (NOT_FOUND, None),
                ],
            )

    @pytest.mark.parametrize("status", [400, 401, 403])
    def test_never_retried(self, status: int) -> None:
        for request in (ACQUIRE, CREATE, QUERY, UPDATE, DELETE):
            with pytest.raises(ApiError) as info:
                run(request, [((status, error_body("no")), None)])
            assert info.value.status_code == status

    def test_check_query_fatal_raises_it(self) -> None:
        with pytest.raises(Unauthorized):
            run(UPDATE, [(UNAVAILABLE, (Call.QUERY, Phase.CHECK, 5.0)), ((401, b""), None)])

    def test_no_delays_raises_the_first_transient_error(self) -> None:
        machine = RetryMachine(UPDATE, RetryPolicy(delays=()))
        machine.start()
        with pytest.raises(ServerError):
            machine.receive_response(503, {}, b"")

    def test_jittered_delays(self) -> None:
        machine = RetryMachine(QUERY, RetryPolicy(random=lambda: 1.0))
        machine.start()
        step = machine.receive_response(503, {}, b"")
        assert isinstance(step, Send) and step.delay == pytest.approx(6.0)

    # -- Create ------------------------------------------------------------------

    @pytest.mark.parametrize("failure", [UNAVAILABLE, LIMITED, TIMEOUT, DROPPED])
    @pytest.mark.parametrize("status", [200, 201])
    def test_create_resends_with_the_same_token(self, failure: Answer, status: int) -> None:
        machine = RetryMachine(CREATE, POLICY)
        machine.start()
        if isinstance(failure, Exception):
            step = machine.receive_error(failure)
        else:
            step = machine.receive_response(failure[0], {}, failure[1])
        assert isinstance(step, Send) and step.request is CREATE and step.delay == 5.0
        done = machine.receive_response(status, {}, task_body("STARTED"))
        assert isinstance(done, Done) and isinstance(done.result, Task)

    def test_create_409_naming_the_task_is_adopted_with_the_same_token(self) -> None:
        machine = RetryMachine(CREATE, POLICY)
        machine.start()
        machine.receive_response(503, {}, b"")
        step = machine.receive_response(409, {}, error_body("exists", taskId=TASK))
        assert isinstance(step, Send) and step.phase is Phase.ADOPT and step.delay == 0
        assert step.request == build_query(APP, TASK, TOKEN)
        done = machine.receive_response(200, RID, task_body("STARTED"))
        assert isinstance(done, Done) and isinstance(done.result, Task)
        assert done.result.task_id == TASK

    def test_create_adoption_survives_a_transient_query(self) -> None:
        result, _ = run(
            CREATE,
            [
                ((409, error_body("exists", taskId=TASK)), (Call.QUERY, Phase.ADOPT, 0.0)),
                (UNAVAILABLE, (Call.QUERY, Phase.ADOPT, 5.0)),
                (OK_TASK, None),
            ],
        )
        assert isinstance(result, Task)

    @pytest.mark.parametrize("answer", [(401, b""), (403, b""), (404, b""), (400, b"")])
    def test_create_adoption_refused_raises_the_conflict(self, answer: Answer) -> None:
        with pytest.raises(InstanceConflict) as info:
            run(
                CREATE,
                [
                    ((409, error_body("exists", taskId=TASK)), (Call.QUERY, Phase.ADOPT, 0.0)),
                    (answer, None),
                ],
            )
        assert isinstance(info.value.__cause__, ApiError)

    def test_create_409_without_task_raises(self) -> None:
        with pytest.raises(InstanceConflict):
            run(CREATE, [((409, error_body("exists")), None)])

    def test_create_202_is_returned(self) -> None:
        result, _ = run(CREATE, [((202, orjson.dumps({"taskId": TASK})), None)])
        assert result == Accepted(Call.CREATE, "req-1", TASK)

    # -- Query, Delete, Acquire ----------------------------------------------------

    def test_query_404_confirmed_by_querying_again(self) -> None:
        result, _ = run(
            QUERY,
            [(NOT_FOUND, (Call.QUERY, Phase.SEND, 5.0)), (OK_TASK, None)],
        )
        assert isinstance(result, Task)
        with pytest.raises(TaskNotFound):
            run(
                QUERY,
                [
                    (NOT_FOUND, (Call.QUERY, Phase.SEND, 5.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.SEND, 10.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.SEND, 15.0)),
                    (NOT_FOUND, None),
                ],
            )
        with pytest.raises(TaskNotFound):
            run(QUERY, [(NOT_FOUND, None)], confirm_missing=False)

    def test_delete_after_commit_then_fail(self) -> None:
        """The Delete took effect but the answer was lost: the check Query tells."""
        result, _ = run(DELETE, [(UNAVAILABLE, (Call.QUERY, Phase.CHECK, 5.0)), (STOPPED, None)])
        assert isinstance(result, Task) and result.ended
        with pytest.raises(TaskNotFound):
            run(DELETE, [(DROPPED, (Call.QUERY, Phase.CHECK, 5.0)), (NOT_FOUND, None)])

    def test_delete_not_yet_done_is_resent(self) -> None:
        result, _ = run(
            DELETE,
            [
                (TIMEOUT, (Call.QUERY, Phase.CHECK, 5.0)),
                (OK_TASK, (Call.DELETE, Phase.SEND, 0.0)),
                (STOPPED, None),
            ],
        )
        assert isinstance(result, Task)

    def test_delete_404_confirmed(self) -> None:
        with pytest.raises(TaskNotFound):
            run(
                DELETE,
                [
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 5.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 10.0)),
                    (NOT_FOUND, (Call.QUERY, Phase.CONFIRM, 15.0)),
                    (NOT_FOUND, None),
                ],
            )

    def test_acquire_retries_then_returns(self) -> None:
        result, _ = run(
            ACQUIRE,
            [
                (LIMITED, (Call.ACQUIRE, Phase.SEND, 5.0)),
                ((202, b""), (Call.ACQUIRE, Phase.SEND, 10.0)),
                ((200, TOKEN_BODY), None),
            ],
        )
        assert isinstance(result, BuilderToken)

    def test_acquire_only_202_ends_in_an_error(self) -> None:
        with pytest.raises(MalformedResponse, match="202"):
            run(
                ACQUIRE,
                [
                    ((202, b""), (Call.ACQUIRE, Phase.SEND, 5.0)),
                    ((202, b""), (Call.ACQUIRE, Phase.SEND, 10.0)),
                    ((202, b""), (Call.ACQUIRE, Phase.SEND, 15.0)),
                    ((202, b""), None),
                ],
            )

    def test_finished_is_final(self) -> None:
        """One answer per Send: answering a finished (or unstarted) machine is a bug."""
        machine = RetryMachine(QUERY, POLICY)
        with pytest.raises(RuntimeError):
            machine.receive_response(200, {}, task_body())
        machine.start()
        with pytest.raises(RuntimeError):
            machine.start()
        assert isinstance(machine.receive_response(200, {}, task_body()), Done)
        with pytest.raises(RuntimeError):
            machine.receive_response(200, {}, task_body())
        failed = RetryMachine(QUERY, POLICY)
        failed.start()
        with pytest.raises(Unauthorized):
            failed.receive_response(401, {}, b"")
        with pytest.raises(RuntimeError):
            failed.receive_error(DROPPED)

    def test_malformed_success_is_not_retried(self) -> None:
        with pytest.raises(MalformedResponse):
            run(QUERY, [((200, b"<html>"), None)])
