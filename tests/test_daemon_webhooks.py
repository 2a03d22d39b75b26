"""Agora NCS webhook verification, parsing and clientSeq ordering (layoutsync.daemon.webhooks)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutsync.daemon.runtime import Daemon, DaemonSettings
from layoutsync.daemon.webhooks import (
    SIGNATURE_HEADER,
    SIGNATURE_V2_HEADER,
    ClientSeqTracker,
    HostEvent,
    SignatureCheck,
    WebhookError,
    parse_notification,
    sign,
    verify_signature,
)
from layoutsync.store import MemoryStore

# The vectors of shared/reference/ncs-webhooks.md (secret "secret").
SECRET = "secret"
BODY = (
    b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
    b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
)
BODY_SHA1 = "033c62f40f687675f17f0f41f91a40c71c0f134c"
BODY_SHA256 = "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99"
SHORT_BODY = BODY.replace(b'"eventMs":1560408533119,', b"")
SHORT_SHA1 = "5a3bb6a6d9fad2ea9ae3fb707a14c9d7f3136df1"
SHORT_SHA256 = "de96da5acf03b0021ac3b4fa2225e7ae6f3533a30d50bb02c08ea4fa748bda24"


def headers(**values: str) -> dict[str, str]:
    names = {"v1": SIGNATURE_HEADER, "v2": SIGNATURE_V2_HEADER}
    return {names[key]: value for key, value in values.items()}


class TestSign:
    """sign() reproduces the published vectors for both headers."""

    @pytest.mark.parametrize(
        ("body", "header", "expected"),
        [
            (BODY, SIGNATURE_V2_HEADER, BODY_SHA256),
            (BODY, SIGNATURE_HEADER, BODY_SHA1),
            (SHORT_BODY, SIGNATURE_V2_HEADER, SHORT_SHA256),
            (SHORT_BODY, SIGNATURE_HEADER, SHORT_SHA1),
        ],
    )
    def test_vectors(self, body: bytes, header: str, expected: str) -> None:
        assert sign(SECRET, body, header=header) == expected
        assert sign(SECRET.encode(), body, header=header) == expected

    def test_empty_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            sign("", BODY)

    def test_unknown_header_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown signature header"):
            sign(SECRET, BODY, header="X-Signature")


class TestVerify:
    """verify_signature() checks the raw body, the strongest header deciding."""

    @pytest.mark.parametrize(
        ("body", "hdrs"),
        [
            (BODY, {"v2": BODY_SHA256}),
            (BODY, {"v1": BODY_SHA1}),
            (BODY, {"v1": BODY_SHA1, "v2": BODY_SHA256}),
            (SHORT_BODY, {"v2": SHORT_SHA256}),
            (SHORT_BODY, {"v1": SHORT_SHA1}),
            (BODY, {"v2": BODY_SHA256.upper()}),
            (BODY, {"v1": BODY_SHA1.upper()}),
            (BODY, {"v2": f" {BODY_SHA256} "}),
        ],
    )
    def test_valid(self, body: bytes, hdrs: dict[str, str]) -> None:
        assert verify_signature(SECRET, body, headers(**hdrs)) is SignatureCheck.VALID

    def test_header_names_are_case_insensitive(self) -> None:
        hdrs = httpx.Headers({"agora-signature-v2": BODY_SHA256})
        assert verify_signature(SECRET, BODY, hdrs)

    def test_missing(self) -> None:
        result = verify_signature(SECRET, BODY, httpx.Headers({}))
        assert result is SignatureCheck.MISSING
        assert not result

    @pytest.mark.parametrize(
        ("body", "hdrs"),
        [
            # the vectors paired with the other body, as some doc snippets do
            (BODY, {"v2": SHORT_SHA256}),
            (SHORT_BODY, {"v1": BODY_SHA1}),
            # one flipped byte of the body
            (BODY.replace(b'"b":2', b'"b":3'), {"v2": BODY_SHA256}),
            # a SHA-1 digest in the V2 header
            (BODY, {"v2": BODY_SHA1}),
            # a valid V1 cannot rescue a wrong V2
            (BODY, {"v1": BODY_SHA1, "v2": "0" * 64}),
            (BODY, {"v2": ""}),
            (BODY, {"v2": "é" * 64}),
        ],
    )
    def test_mismatch(self, body: bytes, hdrs: dict[str, str]) -> None:
        result = verify_signature(SECRET, body, headers(**hdrs))
        assert result is SignatureCheck.MISMATCH
        assert not result

    def test_wrong_secret(self) -> None:
        assert not verify_signature("other", BODY, headers(v2=BODY_SHA256))

    @settings(max_examples=50, deadline=None)
    @given(body=st.binary(max_size=256), secret=st.text(min_size=1, max_size=32))
    def test_round_trip(self, body: bytes, secret: str) -> None:
        for header in (SIGNATURE_HEADER, SIGNATURE_V2_HEADER):
            good = httpx.Headers({header: sign(secret, body, header=header)})
            assert verify_signature(secret, body, good) is SignatureCheck.VALID
            assert not verify_signature(secret, body + b" ", good)


def notice(event_type: int, *, product_id: int = 1, **payload: object) -> bytes:
    return json.dumps(
        {
            "noticeId": "2000001428:4330:107",
            "productId": product_id,
            "eventType": event_type,
            "notifyMs": 1_700_000_000_000,
            "payload": payload,
        }
    ).encode()


class TestParse:
    """parse_notification() keeps what the daemon acts on and names what is wrong."""

    @pytest.mark.parametrize(
        ("event_type", "joined"),
        [(103, True), (104, False), (107, True), (108, False), (111, True), (112, False)],
    )
    def test_host_events(self, event_type: int, joined: bool) -> None:
        body = notice(
            event_type, channelName="room", uid=101, clientSeq=7, ts=1_700_000_000, reason=1
        )
        parsed = parse_notification(body)
        assert parsed.event_type == event_type
        assert parsed.channel == "room"
        assert parsed.host_event == HostEvent(
            event_type=event_type,
            channel="room",
            uid=101,
            client_seq=7,
            joined=joined,
            ts=1_700_000_000,
            reason=1,
        )
        assert parsed.host_event.kind == ("join" if joined else "leave")

    @pytest.mark.parametrize("event_type", [101, 102, 105, 106, 10])
    def test_other_rtc_events_carry_no_host_event(self, event_type: int) -> None:
        parsed = parse_notification(notice(event_type, channelName="room", uid=5, clientSeq=1))
        assert parsed.host_event is None
        assert parsed.event_type == event_type

    def test_other_products_carry_no_host_event(self) -> None:
        parsed = parse_notification(notice(103, product_id=3, channelName="r", uid=1))
        assert parsed.host_event is None

    def test_the_reference_vector_body_parses(self) -> None:
        parsed = parse_notification(BODY)
        assert parsed.event_type == 10
        assert parsed.notice_id == "4eb720f0-8da7-11e9-a43e-53f411c2761f"
        assert parsed.host_event is None

    def test_informative_fields_are_optional(self) -> None:
        parsed = parse_notification(notice(104, channelName="r", uid=9, clientSeq=3, ts="x"))
        assert parsed.host_event is not None
        assert parsed.host_event.ts is None
        assert parsed.host_event.reason is None

    def test_large_client_seq(self) -> None:
        seq = 2**63 + 5
        parsed = parse_notification(notice(103, channelName="r", uid=9, clientSeq=seq))
        assert parsed.host_event is not None
        assert parsed.host_event.client_seq == seq

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{not json", "body is not JSON"),
            (b"[]", "expected a JSON object"),
            (b'{"eventType": 103}', "productId"),
            (b'{"productId": 1, "eventType": "103"}', "eventType"),
            (notice(103, uid=1, clientSeq=1), "payload.channelName: required"),
            (notice(103, channelName=5, uid=1, clientSeq=1), "payload.channelName"),
            (notice(103, channelName="r", clientSeq=1), "payload.uid"),
            (notice(103, channelName="r", uid=0, clientSeq=1), "payload.uid: 0 is outside"),
            (notice(103, channelName="r", uid=2**32, clientSeq=1), "payload.uid"),
            (notice(103, channelName="r", uid=True, clientSeq=1), "payload.uid"),
            (notice(103, channelName="r", uid=1.5, clientSeq=1), "payload.uid"),
            (notice(103, channelName="r", uid=1), "payload.clientSeq"),
            (notice(103, channelName="r", uid=1, clientSeq=-1), "payload.clientSeq"),
            (b'{"productId":1,"eventType":103,"payload":[1]}', "payload: expected"),
        ],
    )
    def test_malformed(self, body: bytes, message: str) -> None:
        with pytest.raises(WebhookError, match=message):
            parse_notification(body)


def event(uid: int, seq: int, *, joined: bool = True, channel: str = "room") -> HostEvent:
    return HostEvent(
        event_type=103 if joined else 104,
        channel=channel,
        uid=uid,
        client_seq=seq,
        joined=joined,
    )


class TestClientSeqTracker:
    """Per (channel, uid), only an event with a higher clientSeq is applied."""

    def test_in_order_events_apply(self) -> None:
        tracker = ClientSeqTracker()
        assert tracker.accept(event(1, 1), 0.0)
        assert tracker.accept(event(1, 2, joined=False), 0.1)
        assert tracker.accept(event(1, 3), 0.2)
        assert tracker.last_seq("room", 1) == 3

    def test_late_and_duplicate_events_are_ignored(self) -> None:
        tracker = ClientSeqTracker()
        assert tracker.accept(event(1, 5, joined=False), 0.0)
        assert not tracker.accept(event(1, 4), 0.1)  # the join that preceded the leave
        assert not tracker.accept(event(1, 5, joined=False), 0.2)  # a resend
        assert tracker.last_seq("room", 1) == 5

    def test_keys_are_per_channel_and_uid(self) -> None:
        tracker = ClientSeqTracker()
        assert tracker.accept(event(1, 10), 0.0)
        assert tracker.accept(event(2, 1), 0.0)
        assert tracker.accept(event(1, 1, channel="other"), 0.0)
        assert len(tracker) == 3

    def test_records_are_kept_for_the_retention_after_a_leave(self) -> None:
        tracker = ClientSeqTracker(retention=60.0)
        tracker.accept(event(1, 5, joined=False), 100.0)
        assert not tracker.accept(event(1, 4), 159.0)
        tracker.prune(160.0)
        assert tracker.last_seq("room", 1) is None
        assert len(tracker) == 0

    def test_hosts_still_present_are_not_pruned(self) -> None:
        tracker = ClientSeqTracker(retention=60.0)
        tracker.accept(event(1, 5), 0.0)
        tracker.prune(10_000.0)
        assert tracker.last_seq("room", 1) == 5

    def test_a_rejoin_cancels_the_pending_expiry(self) -> None:
        tracker = ClientSeqTracker(retention=60.0)
        tracker.accept(event(1, 1, joined=False), 0.0)
        tracker.accept(event(1, 2), 30.0)
        tracker.prune(1_000.0)
        assert tracker.last_seq("room", 1) == 2

    def test_the_table_is_bounded_and_evicts_leavers_first(self) -> None:
        tracker = ClientSeqTracker(max_records=3)
        tracker.accept(event(1, 1), 0.0)
        tracker.accept(event(2, 1, joined=False), 0.0)
        tracker.accept(event(3, 1), 0.0)
        tracker.accept(event(4, 1), 0.0)
        assert len(tracker) == 3
        assert tracker.last_seq("room", 2) is None
        tracker.accept(event(5, 1), 0.0)
        assert len(tracker) == 3
        assert tracker.last_seq("room", 1) is None  # then the least recently updated

    def test_export_and_restore_carry_the_guard_across_a_restart(self) -> None:
        before = ClientSeqTracker(retention=60.0)
        before.accept(event(3, 9, joined=False), 900.0)  # left long ago: pruned on export
        before.accept(event(1, 7), 1000.0)  # a host
        before.accept(event(2, 4, joined=False), 1010.0)  # left 20 s before the export
        rows = before.export(1030.0)
        assert rows == [("room", 1, 7, None), ("room", 2, 4, 20.0)]

        # A new process: its own monotonic clock, 5 s after the export.
        after = ClientSeqTracker(retention=60.0)
        assert after.restore(rows, now=5.0) == 2
        assert not after.accept(event(1, 6, joined=False), 5.0)  # older than the join
        assert not after.accept(event(2, 3), 5.0)  # the join before the leave, delivered late
        assert after.last_seq("room", 2) == 4
        after.prune(5.0 + 40.0)  # the leave is 20 + 40 = 60 s old
        assert after.last_seq("room", 2) is None
        assert after.last_seq("room", 1) == 7

    def test_restore_drops_stale_leaves_and_keeps_the_higher_seq(self) -> None:
        tracker = ClientSeqTracker(retention=60.0)
        tracker.accept(event(1, 10), 0.0)
        restored = tracker.restore(
            [("room", 1, 8, None), ("room", 2, 3, 61.0), ("room", 3, 2, None)], now=0.0
        )
        assert restored == 1
        assert tracker.last_seq("room", 1) == 10
        assert tracker.last_seq("room", 2) is None
        assert tracker.last_seq("room", 3) == 2

    def test_restore_respects_the_bound(self) -> None:
        tracker = ClientSeqTracker(max_records=2)
        tracker.restore([("room", uid, 1, None) for uid in range(1, 6)], now=0.0)
        assert len(tracker) == 2
        assert tracker.last_seq("room", 5) == 1  # the most recently updated are kept

    def test_bad_parameters(self) -> None:
        with pytest.raises(ValueError):
            ClientSeqTracker(retention=-1)
        with pytest.raises(ValueError):
            ClientSeqTracker(max_records=0)

    @settings(max_examples=60, deadline=None)
    @given(st.permutations(list(range(1, 13))))
    def test_any_delivery_order_applies_an_increasing_subsequence(self, order: list[int]) -> None:
        tracker = ClientSeqTracker()
        applied = [seq for seq in order if tracker.accept(event(7, seq, joined=seq % 2 == 1), 0)]
        assert applied == sorted(applied)
        assert applied[-1] == 12  # the highest clientSeq is applied whenever it arrives
        assert tracker.last_seq("room", 7) == max(order)


class TestRecordsAcrossRestarts:
    """The daemon saves the tracker on stop and takes it back on start."""

    @staticmethod
    def daemon(tmp_path: Path, store: MemoryStore) -> Daemon:
        config = tmp_path / "specs"
        config.mkdir(exist_ok=True)
        settings = DaemonSettings(config=config, watch=False, full_gc_interval=0)
        return Daemon(settings, client=object(), store=store)

    @pytest.mark.anyio
    async def test_a_stop_and_start_carry_the_records(self, tmp_path: Path) -> None:
        store = MemoryStore()
        first = self.daemon(tmp_path, store)
        await first.start()
        assert first.seqs.accept(event(1, 9), 0.0)
        await first.stop()
        second = self.daemon(tmp_path, store)
        await second.start()
        try:
            assert second.seqs.last_seq("room", 1) == 9
        finally:
            await second.stop()

    @pytest.mark.anyio
    async def test_a_stop_without_a_start_keeps_what_was_saved(self, tmp_path: Path) -> None:
        store = MemoryStore()
        store.save_client_seqs([("room", 1, 9, None)])
        await self.daemon(tmp_path, store).stop()
        assert store.load_client_seqs() == [("room", 1, 9, None)]
