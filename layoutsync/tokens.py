"""Minted rtcTokens: AccessToken2 from the App Certificate, with the vendor's ``agoraiotools``.

A spec with a top-level ``tokens`` object gives no ``input.token`` or
``output.token``; layoutsync mints them as the vendor's rules ask
(``api-digest.md``): the input token (every audio and video ``rtcToken``) for
the input channel and uid 0, because the transcoder joins input channels under
a random uid, with the join privilege a subscriber needs (the library's
``Role_Subscriber``); the output token for the output channel and
``outputs[].rtc.rtcUid`` with join and publish privileges (``Role_Publisher``).

No secret at rest. A task's tokens are minted when it is created and kept for
its life, but state never holds a token: it holds each token's *recipe*
(``TokenRecipe``: issue time, salt, lifetime), from which the App Certificate
produces the very same token again (AccessToken2 is deterministic given those).
A restart, a reconcile or a reload therefore sends the same tokens, and only a
renewal or a new task changes them.

Renewal. Input tokens are renewed by an Update ``renew_before`` seconds before
they expire. ``outputs[].rtc`` cannot be updated, so the output token cannot
be renewed in place; ``output_expiry`` says what happens as it nears expiry:
``warn`` (plans, logs and status say when the output stops) or ``replace`` (a
scheduled Delete + Create, which mints a new pair).

``mint_token`` is ``RtcTokenBuilder2.build_token_with_uid`` with the issue time
and salt given rather than drawn (the builder takes neither): the same library
classes, the same privileges for each role; ``tests/test_tokens.py`` holds the
two equal byte for byte.
"""

from __future__ import annotations

import datetime
import os
import secrets
import time
import warnings
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

with warnings.catch_warnings():
    # The package's __init__ imports its deprecated DynamicKey modules, which warn.
    warnings.simplefilter("ignore", DeprecationWarning)
    from agoraiotools.AccessToken2 import AccessToken2, ServiceRtc  # type: ignore[import-untyped]

from .errors import SpecError
from .spec import LayoutSpec, TokenSettings

__all__ = [
    "INPUT_PRIVILEGES",
    "MAX_LIFETIME",
    "OUTPUT_PRIVILEGES",
    "TaskTokens",
    "TokenMinter",
    "TokenRecipe",
    "mint_token",
    "with_tokens",
]

#: The token library: "Each privilege is valid for a maximum of 24 hours."
MAX_LIFETIME: Final = 86_400

#: ``Role_Subscriber``: joining is all a subscriber needs (subscribing takes no privilege).
INPUT_PRIVILEGES: Final = (ServiceRtc.kPrivilegeJoinChannel,)
#: ``Role_Publisher``: join, and publish audio, video and data streams.
OUTPUT_PRIVILEGES: Final = (
    ServiceRtc.kPrivilegeJoinChannel,
    ServiceRtc.kPrivilegePublishAudioStream,
    ServiceRtc.kPrivilegePublishVideoStream,
    ServiceRtc.kPrivilegePublishDataStream,
)

_SALT_RANGE: Final = (1, 99_999_999)  # what the library draws its salt from

#: The client's App ID setting (``layoutsync.api.client.ENV_APP_ID``; not imported, so
#: compiling a spec never loads the HTTP client).
ENV_APP_ID: Final = "LAYOUTSYNC_APP_ID"


@dataclass(frozen=True, slots=True)
class TokenRecipe:
    """What makes one token again with the certificate: no secret, safe to store and log."""

    issued_at: int  #: Unix seconds (AccessToken2 ``issue_ts``)
    salt: int
    lifetime: int  #: seconds, for the token and each of its privileges

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.lifetime

    def to_json(self) -> dict[str, int]:
        return {"issuedAt": self.issued_at, "salt": self.salt, "lifetime": self.lifetime}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenRecipe:
        return cls(int(data["issuedAt"]), int(data["salt"]), int(data["lifetime"]))


@dataclass(frozen=True, slots=True)
class TaskTokens:
    """The recipes of one task's tokens: ``input`` (renewed by Update) and ``output``
    (fixed for the task's life). Stored as plain JSON, so any store can hold it."""

    input: TokenRecipe
    output: TokenRecipe

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input.to_json(), "output": self.output.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> TaskTokens | None:
        """The recipes, or None for no (or a damaged) record: a new pair is minted then."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(TokenRecipe.from_json(data["input"]), TokenRecipe.from_json(data["output"]))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        """``input token expires 2026-12-02 18:45:05Z, output token expires ...``."""
        return (
            f"input token expires {utc_text(self.input.expires_at)}, "
            f"output token expires {utc_text(self.output.expires_at)}"
        )


def utc_text(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def mint_token(
    app_id: str,
    certificate: str,
    channel: str,
    uid: int,
    recipe: TokenRecipe,
    privileges: tuple[int, ...] = INPUT_PRIVILEGES,
) -> str:
    """One AccessToken2 RTC token (``"007..."``), built by the vendor's library.

    ``RtcTokenBuilder2.build_token_with_uid`` with ``issue_ts`` and salt fixed by
    ``recipe`` rather than drawn, so the same recipe gives the same token.
    """
    token = AccessToken2(app_id, certificate, issue_ts=recipe.issued_at, expire=recipe.lifetime)
    # The library's constructor draws the salt and takes no argument for it; the recipe's
    # salt is set on the same attribute its signing and packing read.
    token._AccessToken__salt = recipe.salt  # type: ignore[attr-defined]
    service = ServiceRtc(channel, uid)
    for privilege in privileges:
        service.add_privilege(privilege, recipe.lifetime)
    token.add_service(service)
    built: str = token.build()
    if not built:
        # The library answers "" when the App ID or certificate is not 32 hex digits.
        raise SpecError(
            "/tokens/appCertificate",
            "cannot mint: the App ID (LAYOUTSYNC_APP_ID) and the App Certificate must each be "
            "32 hexadecimal digits, as the Agora console shows them",
        )
    return built


class TokenMinter:
    """Mints a spec's tokens from recipes. The certificate is read on each mint, never kept;
    the last minted tokens are remembered in memory (a join re-compiles the same pair)."""

    def __init__(
        self,
        settings: TokenSettings,
        *,
        app_id: str | None = None,
        environ: Mapping[str, str] | None = None,
        rng: secrets.SystemRandom | None = None,
    ) -> None:
        self.settings = settings
        self._app_id = app_id
        self._environ = environ
        self._rng = rng or secrets.SystemRandom()
        self._minted: MutableMapping[tuple[Any, ...], str] = {}

    def __repr__(self) -> str:
        return f"TokenMinter({self.settings!r}, app_id={self._app_id!r})"

    @property
    def app_id(self) -> str:
        if self._app_id is None:
            value = (os.environ if self._environ is None else self._environ).get(ENV_APP_ID)
            if not value:
                raise SpecError("/tokens", f"minting tokens needs the App ID: set {ENV_APP_ID}")
            return value
        return self._app_id

    # --- recipes --------------------------------------------------------------------------------

    def recipe(self, now: float) -> TokenRecipe:
        """A new recipe issued at ``now`` with a fresh salt."""
        return TokenRecipe(int(now), self._rng.randint(*_SALT_RANGE), self.settings.lifetime)

    def new_task(self, now: float) -> TaskTokens:
        """The recipes for a task created at ``now`` (Create, or the Create of a replacement)."""
        return TaskTokens(self.recipe(now), self.recipe(now))

    def input_due(self, tokens: TaskTokens) -> int:
        """When the input tokens are renewed (an Update)."""
        return tokens.input.expires_at - self.settings.renew_before

    def output_due(self, tokens: TaskTokens) -> int:
        """When the output token's expiry is acted on (warned of, or the task replaced)."""
        return tokens.output.expires_at - self.settings.renew_before

    def next_due(self, tokens: TaskTokens, now: float) -> float | None:
        """The next moment something is owed for these tokens (None: nothing left to do)."""
        moments = [self.input_due(tokens), self.output_due(tokens), tokens.output.expires_at]
        later = [moment for moment in moments if moment > now]
        return min(later) if later else None

    # --- tokens ---------------------------------------------------------------------------------

    def pair(self, spec: LayoutSpec, tokens: TaskTokens) -> tuple[str, str]:
        """(input token, output token) of a task, made again from its recipes."""
        certificate = self.settings.certificate(self._environ)
        app_id = self.app_id
        return (
            self._mint(app_id, certificate, spec.input_channel, 0, tokens.input, INPUT_PRIVILEGES),
            self._mint(
                app_id,
                certificate,
                spec.output_channel,
                spec.output_uid,
                tokens.output,
                OUTPUT_PRIVILEGES,
            ),
        )

    def fresh_pair(self, spec: LayoutSpec, now: float | None = None) -> tuple[str, str]:
        """A new pair valid from ``now`` (for showing a body; sessions keep their task's)."""
        return self.pair(spec, self.new_task(time.time() if now is None else now))

    def _mint(
        self,
        app_id: str,
        certificate: str,
        channel: str,
        uid: int,
        recipe: TokenRecipe,
        privileges: tuple[int, ...],
    ) -> str:
        key = (app_id, certificate, channel, uid, recipe, privileges)
        token = self._minted.get(key)
        if token is None:
            token = mint_token(app_id, certificate, channel, uid, recipe, privileges)
            if len(self._minted) >= 4:
                self._minted.clear()  # an input and an output pair, and a renewal's
            self._minted[key] = token
        return token


def with_tokens(body: Mapping[str, Any], input_token: str, output_token: str) -> dict[str, Any]:
    """A copy of a request body carrying these tokens (the body of a task's new Create)."""
    transcoder = dict(body["services"]["cloudTranscoder"]["config"]["transcoder"])
    for key in ("audioInputs", "videoInputs"):
        if key in transcoder:
            transcoder[key] = [
                {**item, "rtc": {**item["rtc"], "rtcToken": input_token}}
                for item in transcoder[key]
            ]
    transcoder["outputs"] = [
        {**item, "rtc": {**item["rtc"], "rtcToken": output_token}} for item in transcoder["outputs"]
    ]
    service = dict(body["services"]["cloudTranscoder"])
    service["config"] = {**service["config"], "transcoder": transcoder}
    return {**body, "services": {**body["services"], "cloudTranscoder": service}}


# --- a session's tokens -------------------------------------------------------------------------

#: A Create uses the recipes its body was compiled with when they are this fresh (seconds).
_FRESH_FOR_CREATE: Final = 60


@dataclass(frozen=True, slots=True)
class TokenChoice:
    """The tokens one compile uses: their recipes, the tokens, and what a plan should say."""

    tokens: TaskTokens
    pair: tuple[str, str]
    notes: tuple[str, ...] = ()
    warning: str | None = None  #: the output token nears or passed expiry (outputExpiry=warn)
    fresh: bool = False  #: minted for a task not yet created

    def __repr__(self) -> str:
        return f"TokenChoice({self.tokens!r}, fresh={self.fresh})"


class TaskTokenProvider:
    """The token provider a session is given: which recipes each compile uses, what a new
    task gets, and when to reconcile again for a renewal. No I/O beyond reading the
    certificate; the renewal and fresh recipes are remembered until they are stored."""

    def __init__(self, minter: TokenMinter) -> None:
        self.minter = minter
        self._fresh: TaskTokens | None = None
        self._renewal: tuple[TaskTokens, TaskTokens] | None = None  # (stored, renewed)

    @property
    def settings(self) -> TokenSettings:
        return self.minter.settings

    def choose(self, spec: LayoutSpec, stored: Any, *, has_task: bool, now: float) -> TokenChoice:
        """The recipes to compile with: the task's own, renewed when due, or a new pair."""
        minter = self.minter
        current = TaskTokens.from_json(stored) if has_task else None
        if current is None:
            fresh = self._fresh
            if fresh is None or now - fresh.input.issued_at >= _FRESH_FOR_CREATE:
                fresh = self._fresh = minter.new_task(now)
            unknown = (
                "the live task's tokens were not minted from this spec's tokens: a new pair "
                "(a new output token forces a replacement)"
            )
            return TokenChoice(
                fresh,
                minter.pair(spec, fresh),
                (unknown,) if has_task else (),
                fresh=not has_task,
            )
        tokens, warning = current, None
        notes: list[str] = []
        output_due = minter.output_due(current)
        if self.settings.output_expiry == "replace" and now >= output_due:
            tokens = self._renewed(current, lambda: minter.new_task(now))
            notes.append(
                f"output token expires {utc_text(current.output.expires_at)}: scheduled "
                "replacement (tokens.outputExpiry=replace), the new task gets new tokens"
            )
        elif now >= minter.input_due(current):
            tokens = self._renewed(current, lambda: TaskTokens(minter.recipe(now), current.output))
            notes.append(f"input token renewed, expires {utc_text(tokens.input.expires_at)}")
        if self.settings.output_expiry == "warn" and now >= output_due:
            expiry = utc_text(current.output.expires_at)
            verb = "expired" if now >= current.output.expires_at else "expires"
            warning = (
                f"output token {verb} {expiry}: outputs[].rtc cannot be updated, so the output "
                "stops publishing then; set tokens.outputExpiry to 'replace' for a scheduled "
                "replacement, or replace the task yourself"
            )
            notes.append(warning)
        return TokenChoice(tokens, minter.pair(spec, tokens), tuple(notes), warning)

    def _renewed(self, current: TaskTokens, make: Any) -> TaskTokens:
        renewal = self._renewal
        if renewal is None or renewal[0] != current:
            renewal = self._renewal = (current, make())
        return renewal[1]

    def for_create(
        self, spec: LayoutSpec, choice: TokenChoice | None, now: float
    ) -> tuple[TaskTokens, tuple[str, str]] | None:
        """The recipes and tokens a Create carries: minted now, or the compile's fresh ones
        (None: the body already carries them)."""
        if (
            choice is not None
            and choice.fresh
            and now - choice.tokens.input.issued_at < (_FRESH_FOR_CREATE)
        ):
            self._fresh = None
            return None
        self._fresh = None
        tokens = self.minter.new_task(now)
        return tokens, self.minter.pair(spec, tokens)

    def due(self, stored: Any, now: float) -> float | None:
        """When this task's tokens next need a reconcile (renewal, warning, replacement)."""
        current = TaskTokens.from_json(stored)
        return None if current is None else self.minter.next_due(current, now)

    @staticmethod
    def live_expiry(stored: Any) -> str | None:
        """``tokens: input token expires ..., output token expires ...`` for a plan."""
        current = TaskTokens.from_json(stored)
        return None if current is None else f"live task's tokens: {current.describe()}"
