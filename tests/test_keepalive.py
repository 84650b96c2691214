"""The keepalive (ping/pong) state machine (sagebidi_perf.keepalive). Time is passed in, so every
timeline here is exact and nothing sleeps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagebidi_perf.errors import InvalidArgumentError
from sagebidi_perf.keepalive import (
    SAGEMAKER_MAX_MISSED_PINGS,
    SAGEMAKER_PING_INTERVAL,
    Keepalive,
    KeepaliveAction,
)

PREFIX = b"conn"


def payload(n: int, prefix: bytes = PREFIX) -> bytes:
    return prefix + n.to_bytes(8, "big")


def expect_ping(ka: Keepalive, now: float) -> bytes:
    action = ka.tick(now)
    assert action is not None, f"no ping at {now}"
    assert action.kind == "ping", f"{action!r} at {now}"
    assert action.payload is not None
    return action.payload


def is_close(action: KeepaliveAction | None) -> bool:
    return action is not None and action.kind == "close"


def test_sagemaker_defaults() -> None:
    assert SAGEMAKER_PING_INTERVAL == 60.0
    assert SAGEMAKER_MAX_MISSED_PINGS == 5
    ka = Keepalive()
    assert ka.interval == 60.0
    assert ka.max_missed == 5
    assert len(ka.payload_prefix) == 8
    assert Keepalive().payload_prefix != ka.payload_prefix  # stale pongs of other connections
    assert not ka.started
    assert not ka.closed
    assert ka.next_deadline is None
    assert ka.last_rtt is None
    assert (ka.pings_sent, ka.pongs_received, ka.unmatched_pongs) == (0, 0, 0)
    assert (ka.outstanding, ka.missed) == (0, 0)


def test_payloads_are_prefix_and_counter() -> None:
    ka = Keepalive(payload_prefix=bytearray(PREFIX))
    ka.start(0.0)
    assert expect_ping(ka, 60.0) == payload(1)
    assert expect_ping(ka, 120.0) == payload(2)
    assert ka.payload_prefix == PREFIX


def test_all_answered_for_an_hour() -> None:
    ka = Keepalive(payload_prefix=PREFIX)
    ka.start(1000.0)
    for i in range(1, 61):
        due = 1000.0 + 60.0 * i
        assert ka.next_deadline == due
        assert ka.tick(due - 0.001) is None
        p = expect_ping(ka, due)
        assert ka.tick(due) is None  # one ping per deadline
        assert ka.pong(p, due + 0.125) == 0.125
        assert ka.outstanding == 0
    assert ka.pings_sent == ka.pongs_received == 60
    assert ka.last_rtt == 0.125
    assert not ka.closed


def test_exactly_five_misses_close_at_360_s() -> None:
    ka = Keepalive(payload_prefix=PREFIX)
    ka.start(0.0)
    for i in range(1, 6):
        expect_ping(ka, 60.0 * i)
        assert ka.missed == i - 1
        assert ka.outstanding == i
    # Four misses are not enough: nothing happens until the fifth ping's window ends.
    assert ka.missed == 4
    assert ka.tick(359.999) is None
    assert not ka.closed
    action = ka.tick(360.0)
    assert action == ka_close()
    assert action is not None
    assert action.payload is None
    assert ka.closed
    assert ka.missed == 5
    assert ka.pings_sent == 5  # no sixth ping
    assert ka.next_deadline is None
    # Close is said once; afterwards the machine is frozen.
    assert ka.tick(360.0) is None
    assert ka.tick(1e9) is None
    assert ka.pong(payload(5), 361.0) is None
    assert (ka.pongs_received, ka.unmatched_pongs) == (0, 0)


def ka_close() -> KeepaliveAction:
    """A close action, obtained the only way there is: by missing one ping."""
    ka = Keepalive(1.0, 1)
    ka.start(0.0)
    ka.tick(1.0)
    action = ka.tick(2.0)
    assert action is not None
    return action


@pytest.mark.parametrize("max_missed", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("interval", [0.5, 20.0, 60.0])
def test_close_instant_is_max_missed_plus_one_intervals(max_missed: int, interval: float) -> None:
    ka = Keepalive(interval, max_missed)
    ka.start(0.0)
    actions = []
    for i in range(1, max_missed + 3):
        t = i * interval
        actions.append((t, ka.tick(t)))
    kinds = [(a.kind if a else None) for _, a in actions]
    assert kinds == ["ping"] * max_missed + ["close", None]
    assert actions[max_missed][0] == pytest.approx((max_missed + 1) * interval)


def test_late_pong_for_the_latest_ping_resets_the_count() -> None:
    ka = Keepalive(payload_prefix=PREFIX)
    ka.start(0.0)
    last = b""
    for i in range(1, 6):
        last = expect_ping(ka, 60.0 * i)
    assert ka.missed == 4
    assert ka.pong(last, 359.0) == pytest.approx(59.0)
    assert (ka.outstanding, ka.missed) == (0, 0)
    assert ka.tick(360.0) is not None  # a ping, not a close
    assert not ka.closed
    # A full new run of five misses is needed.
    for i in range(7, 11):
        expect_ping(ka, 60.0 * i)
    assert ka.tick(659.0) is None
    assert is_close(ka.tick(660.0))


def test_late_pong_for_an_older_ping_clears_only_up_to_it() -> None:
    ka = Keepalive(payload_prefix=PREFIX)
    ka.start(0.0)
    first = expect_ping(ka, 60.0)
    for i in range(2, 5):
        expect_ping(ka, 60.0 * i)
    assert ka.pong(first, 250.0) == pytest.approx(190.0)
    assert ka.outstanding == 3  # pings 2, 3 and 4 are still unanswered
    assert ka.missed == 2
    expect_ping(ka, 300.0)
    expect_ping(ka, 360.0)
    assert is_close(ka.tick(420.0))  # pings 2..6 missed


def test_answering_only_the_latest_of_several_pings_is_enough() -> None:
    """RFC 6455 §5.5.3: a peer may answer only the most recent ping."""
    ka = Keepalive(10.0, 3, payload_prefix=PREFIX)
    ka.start(0.0)
    expect_ping(ka, 10.0)
    expect_ping(ka, 20.0)
    latest = expect_ping(ka, 30.0)
    assert ka.pong(latest, 31.0) == pytest.approx(1.0)
    assert ka.outstanding == 0
    assert ka.pong(payload(1), 31.5) is None  # the skipped ones no longer match
    assert ka.unmatched_pongs == 1


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        PREFIX,
        payload(2),  # not sent yet
        payload(0),  # never sent
        payload(1) + b"\0",
        payload(1)[:-1],
        payload(1, b"othr"),  # another connection's ping
        b"x" * 125,
    ],
)
def test_wrong_payloads_are_ignored(bad: bytes) -> None:
    ka = Keepalive(10.0, 2, payload_prefix=PREFIX)
    ka.start(0.0)
    good = expect_ping(ka, 10.0)
    assert ka.pong(bad, 11.0) is None
    assert ka.unmatched_pongs == 1
    assert ka.outstanding == 1
    assert ka.last_rtt is None
    assert ka.pong(memoryview(good), 12.0) == 2.0
    assert ka.pong(bytearray(good), 12.5) is None  # a duplicate
    assert (ka.pongs_received, ka.unmatched_pongs) == (1, 2)


def test_unsolicited_pongs_are_counted_and_ignored() -> None:
    ka = Keepalive(payload_prefix=PREFIX)
    assert ka.pong(b"", 0.0) is None  # before the start
    ka.start(0.0)
    assert ka.pong(b"heartbeat", 5.0) is None
    assert ka.unmatched_pongs == 2
    assert ka.next_deadline == 60.0


def test_pong_payload_must_be_bytes_like() -> None:
    ka = Keepalive()
    with pytest.raises(TypeError):
        ka.pong("text", 0.0)  # type: ignore[arg-type]


def test_time_going_backwards_is_clamped() -> None:
    ka = Keepalive(10.0, 3, payload_prefix=PREFIX)
    ka.start(100.0)
    p = expect_ping(ka, 110.0)
    assert ka.pong(p, 105.0) == 0.0  # stamped before the ping: RTT clamps to zero
    assert ka.tick(50.0) is None  # counts as 110
    assert ka.next_deadline == 120.0
    expect_ping(ka, 120.0)
    assert ka.tick(119.0) is None
    assert ka.next_deadline == 130.0


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_non_finite_times_are_rejected(now: float) -> None:
    ka = Keepalive()
    with pytest.raises(InvalidArgumentError, match="now must be a finite"):
        ka.start(now)
    with pytest.raises(InvalidArgumentError, match="now must be a finite"):
        ka.tick(now)
    ka.start(0.0)
    for call in (ka.tick, ka.activity, lambda t: ka.pong(b"x", t)):
        with pytest.raises(InvalidArgumentError, match="now must be a finite"):
            call(now)


def test_late_ticks_send_one_ping_and_give_it_a_full_interval() -> None:
    ka = Keepalive(payload_prefix=PREFIX)
    ka.start(0.0)
    expect_ping(ka, 75.0)
    assert ka.next_deadline == 135.0
    expect_ping(ka, 1000.0)  # the loop stalled for 15 minutes: one ping, not a burst
    assert ka.tick(1000.0) is None
    assert ka.pings_sent == 2
    assert ka.missed == 1
    assert ka.next_deadline == 1060.0


def test_a_pong_fed_before_the_tick_at_the_same_instant_counts() -> None:
    ka = Keepalive(1.0, 1, payload_prefix=PREFIX)
    ka.start(0.0)
    p = expect_ping(ka, 1.0)
    assert ka.pong(p, 2.0) == 1.0
    assert ka.tick(2.0) is not None
    assert not ka.closed


def test_start_rules() -> None:
    ka = Keepalive()
    ka.start(5.0)
    assert ka.started
    assert ka.next_deadline == 65.0
    with pytest.raises(InvalidArgumentError, match="already started"):
        ka.start(6.0)
    first_tick = Keepalive()
    assert first_tick.tick(3.0) is None  # the first tick starts the clock
    assert first_tick.next_deadline == 63.0
    with pytest.raises(InvalidArgumentError, match="already started"):
        first_tick.start(4.0)


def test_activity_is_opt_in_liveness() -> None:
    ka = Keepalive(60.0, 2, payload_prefix=PREFIX)
    ka.activity(0.0)  # before the start: nothing
    assert not ka.started
    ka.start(0.0)
    p1 = expect_ping(ka, 60.0)
    expect_ping(ka, 120.0)
    ka.activity(150.0)  # a data frame: the peer is alive
    assert (ka.outstanding, ka.missed) == (0, 0)
    assert ka.pong(p1, 151.0) is None
    # Without activity (SageMaker's rule), data frames do not help.
    expect_ping(ka, 180.0)
    expect_ping(ka, 240.0)
    assert is_close(ka.tick(300.0))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"interval": 0.0}, InvalidArgumentError, "interval must be"),
        ({"interval": -60.0}, InvalidArgumentError, "interval must be"),
        ({"interval": math.nan}, InvalidArgumentError, "interval must be"),
        ({"interval": math.inf}, InvalidArgumentError, "interval must be"),
        ({"interval": 1e12}, InvalidArgumentError, "interval must be"),
        ({"max_missed": 0}, InvalidArgumentError, "max_missed must be between"),
        ({"max_missed": -5}, InvalidArgumentError, "max_missed must be between"),
        ({"max_missed": 2**40}, InvalidArgumentError, "max_missed must be between"),
        ({"max_missed": 65_536}, InvalidArgumentError, "max_missed must be between"),
        ({"max_missed": 2**70}, OverflowError, None),
        ({"payload_prefix": b"x" * 118}, InvalidArgumentError, "at most 117 bytes"),
        ({"payload_prefix": "text"}, TypeError, None),
        ({"interval": "60"}, TypeError, None),
    ],
)
def test_hostile_constructor_arguments(
    kwargs: dict[str, object], error: type[Exception], message: str | None
) -> None:
    with pytest.raises(error, match=message):
        Keepalive(**kwargs)  # type: ignore[arg-type]


def test_the_longest_prefix_keeps_payloads_within_a_control_frame() -> None:
    ka = Keepalive(payload_prefix=b"p" * 117)
    ka.start(0.0)
    assert len(expect_ping(ka, 60.0)) == 125
    empty = Keepalive(payload_prefix=b"")
    empty.start(0.0)
    assert expect_ping(empty, 60.0) == (1).to_bytes(8, "big")


def test_actions_compare_by_value() -> None:
    a, b = Keepalive(payload_prefix=PREFIX), Keepalive(payload_prefix=PREFIX)
    a.start(0.0)
    b.start(0.0)
    pa, pb = a.tick(60.0), b.tick(60.0)
    assert pa == pb
    assert hash(pa) == hash(pb)
    assert pa != ka_close()
    assert pa != b.tick(120.0)
    assert "kind='ping'" in repr(pa)
    assert payload(1).hex() in repr(pa)
    assert "kind='close'" in repr(ka_close())
    assert "max_missed=5" in repr(a)


def test_an_event_loop_driven_by_next_deadline_never_closes_a_live_peer() -> None:
    """Simulated loop: sleep until next_deadline, tick, the peer answers 0.2 s later."""
    ka = Keepalive(payload_prefix=PREFIX)
    now = 0.0
    ka.start(now)
    pending: list[tuple[float, bytes]] = []
    for _ in range(500):
        deadline = ka.next_deadline
        assert deadline is not None
        while pending and pending[0][0] <= deadline:
            at, p = pending.pop(0)
            assert ka.pong(p, at) == pytest.approx(0.2)
        now = deadline
        action = ka.tick(now)
        assert action is not None
        assert action.kind == "ping"
        assert action.payload is not None
        pending.append((now + 0.2, action.payload))
    assert ka.pings_sent == 500
    assert ka.pongs_received == 499
    assert not ka.closed


# --- a reference model, checked against random event sequences -----------------------------


@dataclass
class Model:
    """The documented rules, written plainly."""

    interval: float
    max_missed: int
    now: float = -math.inf
    next_due: float | None = None
    closed: bool = False
    sent: list[tuple[int, float]] = field(default_factory=list)  # outstanding (seq, time)
    seq: int = 0

    def tick(self, now: float) -> tuple[str, int] | None:
        if self.closed:
            return None
        self.now = max(self.now, now)
        if self.next_due is None:
            self.next_due = self.now + self.interval
            return None
        if self.now < self.next_due:
            return None
        if len(self.sent) >= self.max_missed:
            self.closed = True
            return ("close", 0)
        self.seq += 1
        self.sent.append((self.seq, self.now))
        self.next_due = self.now + self.interval
        return ("ping", self.seq)

    def pong(self, seq: int, now: float) -> float | None:
        if self.closed:
            return None
        self.now = max(self.now, now)
        seqs = [s for s, _ in self.sent]
        if seq not in seqs:
            return None
        i = seqs.index(seq)
        rtt = self.now - self.sent[i][1]
        del self.sent[: i + 1]
        return max(rtt, 0.0)


events = st.lists(
    st.tuples(
        st.sampled_from(["tick", "pong", "junk"]),
        st.floats(min_value=-0.5, max_value=3.0),  # time step; sometimes backwards
        st.integers(min_value=0, max_value=12),  # which ping a pong answers
    ),
    max_size=120,
)


@given(
    max_missed=st.integers(min_value=1, max_value=6),
    interval=st.sampled_from([0.5, 1.0, 2.5]),
    steps=events,
)
def test_random_event_sequences_match_the_model(
    max_missed: int, interval: float, steps: list[tuple[str, float, int]]
) -> None:
    ka = Keepalive(interval, max_missed, payload_prefix=PREFIX)
    model = Model(interval, max_missed)
    now, closes, pings = 0.0, 0, 0
    seen_payloads: set[bytes] = set()
    for kind, step, which in steps:
        now += step
        if kind == "tick":
            action = ka.tick(now)
            expected = model.tick(now)
            if expected is None:
                assert action is None
            elif expected[0] == "close":
                assert action is not None
                assert action.kind == "close"
                closes += 1
            else:
                assert action is not None
                assert action.kind == "ping"
                assert action.payload == payload(expected[1])
                assert action.payload not in seen_payloads
                seen_payloads.add(action.payload)
                pings += 1
        elif kind == "pong":
            rtt = ka.pong(payload(which), now)
            expected_rtt = model.pong(which, now)
            assert rtt == expected_rtt
            assert rtt is None or rtt >= 0.0
        else:
            # An unknown pong is ignored, but it still tells both clocks the time.
            assert ka.pong(b"junk" + bytes([which]), now) is None
            assert model.pong(-1, now) is None
        # Invariants.
        assert ka.outstanding <= max_missed
        assert ka.outstanding == len(model.sent)
        assert ka.missed <= max_missed
        assert closes <= 1
        assert ka.closed == (closes == 1) == model.closed
        assert ka.pings_sent == pings
        assert (ka.next_deadline is None) == (model.closed or model.next_due is None)
