"""Generation's metrics (OpenTelemetry): cache lookups and hit ratio, degraded replies, the model's
time to first token and tokens per second."""

from __future__ import annotations

from typing import Callable

from opentelemetry.metrics import Meter, Observation


class GenerationMetrics:
    def __init__(self, meter: Meter | None, *, hit_ratio: Callable[[], float] | None = None, breaker_open: Callable[[], bool] | None = None) -> None:
        self._lookups = self._degraded = self._ttft = self._speed = None
        if meter is None:
            return
        self._ttft = meter.create_histogram(
            "kefu.generation.time_to_first_token", unit="s", description="From asking the model to its first text"
        )
        self._speed = meter.create_histogram(
            "kefu.generation.tokens_per_second", unit="{token}/s", description="Completion tokens per second of a finished reply"
        )
        self._lookups = meter.create_counter(
            "kefu.generation.cache.lookups", unit="{lookup}", description="Hot-question cache lookups, by result (hit or miss)"
        )
        self._degraded = meter.create_counter(
            "kefu.generation.degraded", unit="{reply}", description="Replies served from a fallback because the model failed"
        )
        if hit_ratio is not None:
            meter.create_observable_gauge(
                "kefu.generation.cache.hit_ratio", callbacks=[lambda _o: [Observation(hit_ratio())]],
                description="Share of cache lookups that were hits since start",
            )
        if breaker_open is not None:
            meter.create_observable_gauge(
                "kefu.generation.breaker.open", callbacks=[lambda _o: [Observation(1 if breaker_open() else 0)]],
                description="1 while the circuit breaker in front of the model is open",
            )

    def cache_lookup(self, hit: bool) -> None:
        if self._lookups is not None:
            self._lookups.add(1, {"result": "hit" if hit else "miss"})

    def degraded(self) -> None:
        if self._degraded is not None:
            self._degraded.add(1)

    def first_token(self, seconds: float) -> None:
        if self._ttft is not None:
            self._ttft.record(seconds)

    def reply_speed(self, tokens: int, seconds: float) -> None:
        if self._speed is not None and tokens > 0 and seconds > 0:
            self._speed.record(tokens / seconds)
