import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kefu.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeRequest(_message.Message):
    __slots__ = ("text", "language_hint", "session_id", "reference_time", "top_k")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_HINT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TIME_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    text: str
    language_hint: str
    session_id: str
    reference_time: _timestamp_pb2.Timestamp
    top_k: int
    def __init__(self, text: _Optional[str] = ..., language_hint: _Optional[str] = ..., session_id: _Optional[str] = ..., reference_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., top_k: _Optional[int] = ...) -> None: ...

class PiiSpan(_message.Message):
    __slots__ = ("type", "placeholder", "start", "end")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    type: str
    placeholder: str
    start: int
    end: int
    def __init__(self, type: _Optional[str] = ..., placeholder: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("language", "normalized_text", "masked_text", "pii", "intents", "intent_margin", "out_of_scope", "entities", "sentiment", "flags", "degraded", "query_embedding", "embedder_id", "off_topic")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_TEXT_FIELD_NUMBER: _ClassVar[int]
    MASKED_TEXT_FIELD_NUMBER: _ClassVar[int]
    PII_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    INTENT_MARGIN_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SCOPE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    QUERY_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_ID_FIELD_NUMBER: _ClassVar[int]
    OFF_TOPIC_FIELD_NUMBER: _ClassVar[int]
    language: str
    normalized_text: str
    masked_text: str
    pii: _containers.RepeatedCompositeFieldContainer[PiiSpan]
    intents: _containers.RepeatedCompositeFieldContainer[_common_pb2.IntentCandidate]
    intent_margin: float
    out_of_scope: bool
    entities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entity]
    sentiment: _common_pb2.Sentiment
    flags: _containers.RepeatedScalarFieldContainer[str]
    degraded: bool
    query_embedding: _containers.RepeatedScalarFieldContainer[float]
    embedder_id: str
    off_topic: float
    def __init__(self, language: _Optional[str] = ..., normalized_text: _Optional[str] = ..., masked_text: _Optional[str] = ..., pii: _Optional[_Iterable[_Union[PiiSpan, _Mapping]]] = ..., intents: _Optional[_Iterable[_Union[_common_pb2.IntentCandidate, _Mapping]]] = ..., intent_margin: _Optional[float] = ..., out_of_scope: _Optional[bool] = ..., entities: _Optional[_Iterable[_Union[_common_pb2.Entity, _Mapping]]] = ..., sentiment: _Optional[_Union[_common_pb2.Sentiment, _Mapping]] = ..., flags: _Optional[_Iterable[str]] = ..., degraded: _Optional[bool] = ..., query_embedding: _Optional[_Iterable[float]] = ..., embedder_id: _Optional[str] = ..., off_topic: _Optional[float] = ...) -> None: ...
