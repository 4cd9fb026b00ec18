"""Reconnect and REST policies (backoff, circuit breaker, reconnect policy, REST rate limiter).

Pure objects with an injected clock and random source: every decision is checked
without a socket and without waiting.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.backoff import Backoff
from ingest.breaker import CircuitBreaker, State
from ingest.ratelimit import RestRateLimiter
from ingest.reconnect import ReconnectPolicy


def state(br: CircuitBreaker) -> State:
    """The breaker's state, read afresh (a helper, so mypy does not narrow it between reads)."""
    return br.state


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def low(a: float, b: float) -> float:
    return a


def high(a: float, b: float) -> float:
    return b


# --- backoff -----------------------------------------------------------------------------------

def test_backoff_follows_the_seed_formula_with_minimum_jitter() -> None:
    b = Backoff(cap=300, uniform=low)
    assert [b.next_delay() for _ in range(10)] == pytest.approx(
        [1.1, 2.2, 4.4, 8.8, 17.6, 35.2, 70.4, 140.8, 281.6, 330.0])


def test_backoff_jitter_adds_at_most_thirty_percent() -> None:
    b = Backoff(cap=300, uniform=high)
    assert [b.next_delay() for _ in range(3)] == pytest.approx([1.3, 2.6, 5.2])


def test_backoff_is_capped_before_jitter() -> None:
    b = Backoff(cap=2, uniform=high)
    assert [b.next_delay() for _ in range(4)] == pytest.approx([1.3, 2.6, 2.6, 2.6])


def test_backoff_reset_starts_again_from_the_first_step() -> None:
    b = Backoff(cap=300, uniform=low)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.next_delay() == pytest.approx(1.1)


def test_backoff_at_cap_skips_the_climb() -> None:
    b = Backoff(cap=300, uniform=low)
    assert b.next_delay(at_cap=True) == pytest.approx(330.0)


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0.1, max_value=1000))
def test_backoff_never_exceeds_cap_plus_thirty_percent(attempts: int, cap: float) -> None:
    b = Backoff(cap=cap)
    b.attempt = attempts
    delay = b.next_delay()
    assert 0 < delay <= cap * 1.3 + 1e-9


# --- circuit breaker ---------------------------------------------------------------------------

def test_breaker_opens_after_the_configured_consecutive_failures() -> None:
    clock = FakeClock()
    br = CircuitBreaker(failures=5, recovery=300, clock=clock)
    assert [br.record_failure() for _ in range(4)] == [False] * 4
    assert state(br) is State.CLOSED
    assert br.record_failure() is True
    assert state(br) is State.OPEN
    assert br.wait_time() == pytest.approx(300)


def test_breaker_goes_half_open_after_recovery_and_a_failed_probe_reopens_it() -> None:
    clock = FakeClock()
    br = CircuitBreaker(failures=2, recovery=300, clock=clock)
    br.record_failure()
    br.record_failure()
    clock.advance(299.9)
    assert state(br) is State.OPEN
    clock.advance(0.1)
    assert state(br) is State.HALF_OPEN
    assert br.wait_time() == 0
    assert br.record_failure() is True
    assert state(br) is State.OPEN
    assert br.wait_time() == pytest.approx(300)


def test_breaker_closes_on_a_successful_probe() -> None:
    clock = FakeClock()
    br = CircuitBreaker(failures=1, recovery=10, clock=clock)
    br.record_failure()
    clock.advance(10)
    br.record_success()
    assert state(br) is State.CLOSED
    assert br.consecutive_failures == 0


def test_breaker_success_resets_the_failure_count() -> None:
    br = CircuitBreaker(failures=3, recovery=10, clock=FakeClock())
    br.record_failure()
    br.record_failure()
    br.record_success()
    br.record_failure()
    br.record_failure()
    assert state(br) is State.CLOSED


# --- reconnect policy --------------------------------------------------------------------------

def policy(clock: FakeClock, **kw: float) -> ReconnectPolicy:
    args: dict[str, float] = {"cap": 300, "reset_after": 60, "max_attempts": 20, "circuit_failures": 5,
                              "circuit_recovery": 300}
    args.update(kw)
    return ReconnectPolicy(cap=args["cap"], reset_after=args["reset_after"],
                           max_attempts=int(args["max_attempts"]),
                           circuit_failures=int(args["circuit_failures"]),
                           circuit_recovery=args["circuit_recovery"], clock=clock, uniform=low)


def test_a_connection_that_keeps_dying_quickly_backs_off_instead_of_spinning() -> None:
    clock = FakeClock()
    p = policy(clock)
    delays = []
    for _ in range(4):
        p.established()
        clock.advance(5)  # healthy for 5 s only: less than reset_after
        delays.append(p.failed())
    assert delays == pytest.approx([1.1, 2.2, 4.4, 8.8])


def test_backoff_starts_over_after_a_connection_was_healthy_for_reset_after() -> None:
    clock = FakeClock()
    p = policy(clock)
    p.established()
    clock.advance(5)
    p.failed()
    p.established()
    clock.advance(5)
    assert p.failed() == pytest.approx(2.2)
    p.established()
    clock.advance(60)
    assert p.failed() == pytest.approx(1.1)


def test_drops_every_45_to_60_seconds_keep_the_delay_at_the_first_steps() -> None:
    # The seed's symptom (and the soak drill's fault): a connection healthy for 45 s is not
    # spinning; its reconnect must not climb towards the cap drop after drop.
    clock = FakeClock()
    p = policy(clock)
    delays = []
    for healthy in (45, 50, 60, 47, 55, 45, 52, 46):
        p.established()
        clock.advance(healthy)
        delays.append(p.failed())
    assert max(delays) == pytest.approx(1.1)


def test_health_short_of_reset_after_takes_a_step_off_per_quarter_of_it() -> None:
    clock = FakeClock()
    p = policy(clock)  # reset_after 60: one step per 15 s healthy
    for _ in range(4):  # four quick deaths: the next delay would be 2**4
        p.established()
        clock.advance(1)
        p.failed()
    p.established()
    clock.advance(31)  # two quarters: 4 - 2 = 2 steps, the delay is 2**2
    assert p.failed() == pytest.approx(4.4)


def test_consecutive_connect_failures_open_the_breaker_and_the_wait_covers_recovery() -> None:
    clock = FakeClock()
    p = policy(clock, circuit_failures=3, circuit_recovery=100, cap=2)
    assert p.failed() == pytest.approx(1.1)
    assert p.failed() == pytest.approx(2.2)
    assert p.failed() == pytest.approx(100)  # third failure opens the breaker
    assert state(p.breaker) is State.OPEN
    assert p.consecutive_failures == 3
    clock.advance(100)
    assert state(p.breaker) is State.HALF_OPEN  # one probe may go
    assert p.failed() == pytest.approx(100)  # the probe failed: open again


def test_an_established_connection_closes_the_breaker_and_clears_the_failure_count() -> None:
    clock = FakeClock()
    p = policy(clock, circuit_failures=2, circuit_recovery=100)
    p.failed()
    p.failed()
    clock.advance(100)
    assert p.established() is False  # the first established connection is not a reconnect
    assert p.consecutive_failures == 0
    assert not p.circuit_open
    clock.advance(1)
    p.failed()
    assert p.established() is True


def test_it_never_gives_up_and_past_max_attempts_waits_the_cap_and_says_it_is_stuck() -> None:
    clock = FakeClock()
    p = policy(clock, cap=300, max_attempts=3, circuit_failures=10_000)
    delays = [p.failed() for _ in range(6)]
    assert delays == pytest.approx([1.1, 2.2, 4.4, 330, 330, 330])
    assert p.stuck
    for _ in range(1000):
        assert p.failed() == pytest.approx(330)


def test_healthy_for_reports_uptime_of_the_current_connection() -> None:
    clock = FakeClock()
    p = policy(clock)
    assert p.healthy_for() == 0
    p.established()
    clock.advance(42)
    assert p.healthy_for() == pytest.approx(42)


# --- REST rate limiter -------------------------------------------------------------------------

def limiter(clock: FakeClock) -> RestRateLimiter:
    return RestRateLimiter(initial=0.5, factor=1.5, maximum=10, ban_pause=600, clock=clock)


def test_no_pause_until_a_rate_limit_answer() -> None:
    rl = limiter(FakeClock())
    rl.on_success({})
    assert rl.wait_time() == 0


def test_rate_limit_answers_grow_the_pause_by_the_seed_factor_up_to_the_maximum() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    pauses = []
    for _ in range(10):
        pauses.append(rl.on_rate_limited(status=429))
        clock.advance(rl.wait_time())
    assert pauses == pytest.approx([0.5, 0.75, 1.125, 1.6875, 2.53125, 3.796875, 5.6953125,
                                    8.54296875, 10, 10])


def test_successes_relax_the_pause_until_it_vanishes() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    for _ in range(3):
        rl.on_rate_limited(status=200)
    assert rl.pause == pytest.approx(1.125)
    rl.on_success({})
    assert rl.pause == pytest.approx(0.75)
    rl.on_success({})
    assert rl.pause == pytest.approx(0.5)
    rl.on_success({})
    assert rl.pause == 0


def test_the_reset_timestamp_of_a_10006_answer_is_honoured() -> None:
    clock = FakeClock(1000.0)
    rl = limiter(clock)
    wait = rl.on_rate_limited(status=200, headers={"X-Bapi-Limit-Status": "0",
                                                   "X-Bapi-Limit-Reset-Timestamp": "1003000"})
    assert wait == pytest.approx(3.0)


def test_an_absurd_reset_timestamp_is_bounded_by_the_maximum_pause() -> None:
    clock = FakeClock(1000.0)
    rl = limiter(clock)
    assert rl.on_rate_limited(status=200, headers={"X-Bapi-Limit-Reset-Timestamp": "99999999999999"}) == 10
    rl2 = limiter(clock)
    assert rl2.on_rate_limited(status=200, headers={"X-Bapi-Limit-Reset-Timestamp": "garbage"}) == 0.5


def test_retry_after_of_a_429_is_honoured() -> None:
    rl = limiter(FakeClock())
    assert rl.on_rate_limited(status=429, headers={"Retry-After": "4"}) == pytest.approx(4)


def test_http_403_means_a_ban_and_stops_calls_for_the_ban_pause() -> None:
    rl = limiter(FakeClock())
    assert rl.on_rate_limited(status=403) == pytest.approx(600)


def test_an_exhausted_window_on_a_success_waits_for_its_reset() -> None:
    clock = FakeClock(1000.0)
    rl = limiter(clock)
    rl.on_success({"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": "1001500"})
    assert rl.wait_time() == pytest.approx(1.5)
    rl.on_success({"X-Bapi-Limit-Status": "5", "X-Bapi-Limit-Reset-Timestamp": "1009000"})
    assert rl.wait_time() == pytest.approx(1.5)
    clock.advance(1.5)
    assert rl.wait_time() == 0


def test_a_connection_that_delivered_data_reconnects_within_the_first_steps_however_often_it_dies() -> None:
    # The chaos drill's "no pong": each connection delivers tickers, then dies ~10 s later when
    # its ping goes unanswered. Backing off to the 300 s cap would leave ~10 s of data per 5 min.
    clock = FakeClock()
    p = policy(clock)
    delays = []
    for _ in range(12):
        p.established()
        clock.advance(10)
        delays.append(p.failed(delivered=True))
    assert delays[:4] == pytest.approx([1.1, 2.2, 4.4, 8.8])
    assert max(delays) == pytest.approx(8.8)  # 2**3 + 10 % jitter, never more


def test_a_connection_that_died_before_any_data_still_climbs_to_the_cap() -> None:
    clock = FakeClock()
    p = policy(clock)
    for _ in range(6):
        p.established()
        clock.advance(10)
        p.failed(delivered=True)
    delays = []
    for _ in range(12):
        p.established()
        clock.advance(10)
        delays.append(p.failed())
    assert delays[0] == pytest.approx(17.6)  # climbs on from the step delivered data left it at (2**4)
    assert delays[-1] == pytest.approx(330.0)  # then climbs as before: 300 s cap + 10 %
