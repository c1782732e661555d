"""gRPC face of NLU: translate messages, validate, map errors."""

from __future__ import annotations

from datetime import timezone

import grpc

from kefu.v1 import common_pb2, nlu_pb2, nlu_pb2_grpc
from services import degraded
from services.errors import InvalidArgument, grpc_errors, require_text
from services.nlu.core import MessageAnalyzer, Understanding

POLARITY = {
    "negative": common_pb2.POLARITY_NEGATIVE,
    "neutral": common_pb2.POLARITY_NEUTRAL,
    "positive": common_pb2.POLARITY_POSITIVE,
}


def to_proto(u: Understanding) -> nlu_pb2.AnalyzeResponse:
    return nlu_pb2.AnalyzeResponse(
        language=u.language,
        normalized_text=u.normalized_text,
        masked_text=u.masked.text,
        pii=[nlu_pb2.PiiSpan(type=s.type, placeholder=s.placeholder, start=s.start, end=s.end) for s in u.masked.spans],
        intents=[common_pb2.IntentCandidate(name=i.name, confidence=i.confidence) for i in u.intents],
        intent_margin=u.margin,
        out_of_scope=u.out_of_scope,
        off_topic=u.off_topic,
        entities=[
            common_pb2.Entity(type=e.type, text=e.text, value=e.value, start=e.start, end=e.end, confidence=e.confidence)
            for e in u.entities
        ],
        sentiment=common_pb2.Sentiment(
            polarity=POLARITY[u.sentiment.polarity],
            confidence=u.sentiment.confidence,
            dissatisfaction=u.sentiment.dissatisfaction,
        ),
        flags=u.flags,
        # The vector behind the intents, for Knowledge to reuse (one embedding per turn).
        query_embedding=[] if u.embedding is None else u.embedding.reshape(-1).tolist(),
        embedder_id="" if u.embedding is None else u.embedder_id,
    )


class NluServicer(nlu_pb2_grpc.NLUServicer):
    def __init__(self, analyzer: MessageAnalyzer, *, max_chars: int) -> None:
        self._analyzer = analyzer
        self._max_chars = max_chars

    @grpc_errors
    async def Analyze(self, request: nlu_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext) -> nlu_pb2.AnalyzeResponse:
        text = require_text(request.text, field="text", max_chars=self._max_chars)
        if request.top_k < 0:
            raise InvalidArgument(f"top_k must not be negative (got {request.top_k})")
        top_k = min(request.top_k or 3, 20)
        reference_time = request.reference_time.ToDatetime(tzinfo=timezone.utc) if request.HasField("reference_time") else None
        with degraded.tracking() as fallbacks:
            understanding = await self._analyzer.analyze(
                text, language_hint=request.language_hint, top_k=top_k, reference_time=reference_time
            )
        response = to_proto(understanding)
        response.degraded = bool(fallbacks)
        return response
