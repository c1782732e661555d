"""The circuit breaker in front of the model backend (its state machine; the real
backend going away is in test_degradation.py)."""

from __future__ import annotations

from services.generation.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_fails_fast():
    clock = Clock()
    b = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state == CLOSED
    b.record_success()  # a success resets the count
    for _ in range(3):
        assert b.allow()
        b.record_failure()
    assert b.state == OPEN
    assert not b.allow() and b.retry_in() == 10


def test_one_probe_after_reset_then_close_or_reopen():
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_s=5, clock=clock)
    b.record_failure()
    clock.now += 5
    assert b.allow() and b.state == HALF_OPEN
    assert not b.allow()  # only one probe at a time
    b.record_failure()
    assert b.state == OPEN and not b.allow()
    clock.now += 5
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED and b.allow() and b.allow()


def test_an_abandoned_probe_does_not_wedge_the_breaker():
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_s=1, clock=clock)
    b.record_failure()
    clock.now += 1
    assert b.allow()
    b.release_probe()  # the caller went away mid-stream
    assert b.allow()
