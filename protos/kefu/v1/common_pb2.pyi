import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Polarity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLARITY_UNSPECIFIED: _ClassVar[Polarity]
    POLARITY_NEGATIVE: _ClassVar[Polarity]
    POLARITY_NEUTRAL: _ClassVar[Polarity]
    POLARITY_POSITIVE: _ClassVar[Polarity]
POLARITY_UNSPECIFIED: Polarity
POLARITY_NEGATIVE: Polarity
POLARITY_NEUTRAL: Polarity
POLARITY_POSITIVE: Polarity

class IntentCandidate(_message.Message):
    __slots__ = ("name", "confidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    confidence: float
    def __init__(self, name: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("type", "text", "value", "start", "end", "confidence")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    text: str
    value: str
    start: int
    end: int
    confidence: float
    def __init__(self, type: _Optional[str] = ..., text: _Optional[str] = ..., value: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class Sentiment(_message.Message):
    __slots__ = ("polarity", "confidence", "dissatisfaction")
    POLARITY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DISSATISFACTION_FIELD_NUMBER: _ClassVar[int]
    polarity: Polarity
    confidence: float
    dissatisfaction: float
    def __init__(self, polarity: _Optional[_Union[Polarity, str]] = ..., confidence: _Optional[float] = ..., dissatisfaction: _Optional[float] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("doc_id", "title", "chunk_id", "snippet", "score", "kb_version")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    KB_VERSION_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    title: str
    chunk_id: str
    snippet: str
    score: float
    kb_version: int
    def __init__(self, doc_id: _Optional[str] = ..., title: _Optional[str] = ..., chunk_id: _Optional[str] = ..., snippet: _Optional[str] = ..., score: _Optional[float] = ..., kb_version: _Optional[int] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "text", "time")
    class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ROLE_UNSPECIFIED: _ClassVar[ChatMessage.Role]
        ROLE_SYSTEM: _ClassVar[ChatMessage.Role]
        ROLE_CUSTOMER: _ClassVar[ChatMessage.Role]
        ROLE_ASSISTANT: _ClassVar[ChatMessage.Role]
        ROLE_AGENT: _ClassVar[ChatMessage.Role]
    ROLE_UNSPECIFIED: ChatMessage.Role
    ROLE_SYSTEM: ChatMessage.Role
    ROLE_CUSTOMER: ChatMessage.Role
    ROLE_ASSISTANT: ChatMessage.Role
    ROLE_AGENT: ChatMessage.Role
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    role: ChatMessage.Role
    text: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, role: _Optional[_Union[ChatMessage.Role, str]] = ..., text: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...
