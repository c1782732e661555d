"""Dialog's metrics (OpenTelemetry) and its one log line per turn: turns by what kefu did
(answer, abstain, handoff...), degraded turns, turn duration, intent confidence, and store
operations by result; the log line carries the turn's trace id (services/telemetry.py), so
an SRE goes from a log line to the trace."""

from __future__ import annotations

import logging

from opentelemetry.metrics import Meter

from kefu.v1 import dialog_pb2

log = logging.getLogger("kefu.dialog.turns")
_ACTION = {v: k.removeprefix("ACTION_TYPE_").lower() for k, v in dialog_pb2.ActionType.items()}


class DialogMetrics:
    def __init__(self, meter: Meter | None) -> None:
        self._meter = meter
        if meter is None:
            return
        self._turns = meter.create_counter("kefu.dialog.turns", unit="{turn}", description="Turns, by the first thing kefu did")
        self._degraded = meter.create_counter("kefu.dialog.degraded", unit="{turn}", description="Turns answered from a fallback")
        self._operations = meter.create_counter(
            "kefu.dialog.operations", unit="{operation}", description="Store operations run, by operation and status (done, rejected)"
        )
        self._duration = meter.create_histogram("kefu.dialog.turn.duration", unit="s", description="Time to the turn's result")
        self._confidence = meter.create_histogram("kefu.dialog.intent.confidence", unit="1", description="Confidence of the best intent")

    def turn(self, result: dialog_pb2.TurnResult, seconds: float) -> None:
        actions = [_ACTION.get(a.type, "unspecified") for a in result.actions]
        first = actions[0] if actions else "none"
        log.info(
            "turn %s #%d intent=%s (%.2f) actions=%s handoff=%s degraded=%s %.0f ms",
            result.session_id, result.turn_index, result.intent.name or "-", result.intent.confidence, ",".join(actions) or "-",
            dialog_pb2.HandoffState.Name(result.handoff).removeprefix("HANDOFF_STATE_").lower(), result.degraded, seconds * 1000,
        )
        if self._meter is None:
            return
        self._turns.add(1, {"action": first})
        if result.degraded:
            self._degraded.add(1)
        self._duration.record(seconds)
        if result.intent.name:
            self._confidence.record(result.intent.confidence)
        for a in result.actions:
            if a.type == dialog_pb2.ACTION_TYPE_OPERATION:
                self._operations.add(1, {"operation": a.detail.get("operation", ""), "status": a.detail.get("status", "")})
