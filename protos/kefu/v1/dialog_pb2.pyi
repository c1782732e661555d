import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kefu.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_TYPE_UNSPECIFIED: _ClassVar[ActionType]
    ACTION_TYPE_ANSWER: _ClassVar[ActionType]
    ACTION_TYPE_CLARIFY: _ClassVar[ActionType]
    ACTION_TYPE_CONFIRM: _ClassVar[ActionType]
    ACTION_TYPE_CREATE_TICKET: _ClassVar[ActionType]
    ACTION_TYPE_HANDOFF: _ClassVar[ActionType]
    ACTION_TYPE_ABSTAIN: _ClassVar[ActionType]
    ACTION_TYPE_SMALLTALK: _ClassVar[ActionType]
    ACTION_TYPE_SCREENED: _ClassVar[ActionType]
    ACTION_TYPE_OPERATION: _ClassVar[ActionType]
    ACTION_TYPE_AGENT: _ClassVar[ActionType]

class HandoffState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_STATE_UNSPECIFIED: _ClassVar[HandoffState]
    HANDOFF_STATE_BOT: _ClassVar[HandoffState]
    HANDOFF_STATE_REQUESTED: _ClassVar[HandoffState]
    HANDOFF_STATE_AGENT: _ClassVar[HandoffState]
ACTION_TYPE_UNSPECIFIED: ActionType
ACTION_TYPE_ANSWER: ActionType
ACTION_TYPE_CLARIFY: ActionType
ACTION_TYPE_CONFIRM: ActionType
ACTION_TYPE_CREATE_TICKET: ActionType
ACTION_TYPE_HANDOFF: ActionType
ACTION_TYPE_ABSTAIN: ActionType
ACTION_TYPE_SMALLTALK: ActionType
ACTION_TYPE_SCREENED: ActionType
ACTION_TYPE_OPERATION: ActionType
ACTION_TYPE_AGENT: ActionType
HANDOFF_STATE_UNSPECIFIED: HandoffState
HANDOFF_STATE_BOT: HandoffState
HANDOFF_STATE_REQUESTED: HandoffState
HANDOFF_STATE_AGENT: HandoffState

class TurnRequest(_message.Message):
    __slots__ = ("session_id", "text", "channel", "customer_id", "language_hint")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_HINT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    text: str
    channel: str
    customer_id: str
    language_hint: str
    def __init__(self, session_id: _Optional[str] = ..., text: _Optional[str] = ..., channel: _Optional[str] = ..., customer_id: _Optional[str] = ..., language_hint: _Optional[str] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("type", "ticket_id", "workflow_id", "detail")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    type: ActionType
    ticket_id: str
    workflow_id: str
    detail: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[_Union[ActionType, str]] = ..., ticket_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., detail: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TurnResult(_message.Message):
    __slots__ = ("session_id", "turn_index", "reply_text", "citations", "intent", "entities", "actions", "handoff", "language", "degraded", "sentiment", "state", "messages")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_INDEX_FIELD_NUMBER: _ClassVar[int]
    REPLY_TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    turn_index: int
    reply_text: str
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    intent: _common_pb2.IntentCandidate
    entities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entity]
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    handoff: HandoffState
    language: str
    degraded: bool
    sentiment: _common_pb2.Sentiment
    state: DialogState
    messages: _containers.RepeatedCompositeFieldContainer[SessionMessage]
    def __init__(self, session_id: _Optional[str] = ..., turn_index: _Optional[int] = ..., reply_text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., intent: _Optional[_Union[_common_pb2.IntentCandidate, _Mapping]] = ..., entities: _Optional[_Iterable[_Union[_common_pb2.Entity, _Mapping]]] = ..., actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., handoff: _Optional[_Union[HandoffState, str]] = ..., language: _Optional[str] = ..., degraded: _Optional[bool] = ..., sentiment: _Optional[_Union[_common_pb2.Sentiment, _Mapping]] = ..., state: _Optional[_Union[DialogState, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[SessionMessage, _Mapping]]] = ...) -> None: ...

class PendingOperation(_message.Message):
    __slots__ = ("operation", "args")
    class ArgsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    operation: str
    args: _containers.ScalarMap[str, str]
    def __init__(self, operation: _Optional[str] = ..., args: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DialogState(_message.Message):
    __slots__ = ("flow", "requested_slot", "slots", "customer_id", "pending")
    class SlotsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FLOW_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_SLOT_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    flow: str
    requested_slot: str
    slots: _containers.ScalarMap[str, str]
    customer_id: str
    pending: PendingOperation
    def __init__(self, flow: _Optional[str] = ..., requested_slot: _Optional[str] = ..., slots: _Optional[_Mapping[str, str]] = ..., customer_id: _Optional[str] = ..., pending: _Optional[_Union[PendingOperation, _Mapping]] = ...) -> None: ...

class TextChunk(_message.Message):
    __slots__ = ("delta", "replace", "author")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    delta: str
    replace: bool
    author: str
    def __init__(self, delta: _Optional[str] = ..., replace: _Optional[bool] = ..., author: _Optional[str] = ...) -> None: ...

class TurnEvent(_message.Message):
    __slots__ = ("chunk", "result")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    chunk: TextChunk
    result: TurnResult
    def __init__(self, chunk: _Optional[_Union[TextChunk, _Mapping]] = ..., result: _Optional[_Union[TurnResult, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("index", "customer_text", "reply_text", "intent", "actions", "citations", "time")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TEXT_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    index: int
    customer_text: str
    reply_text: str
    intent: str
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    time: _timestamp_pb2.Timestamp
    def __init__(self, index: _Optional[int] = ..., customer_text: _Optional[str] = ..., reply_text: _Optional[str] = ..., intent: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "customer_id", "channel", "created_at", "handoff", "turns", "messages", "held_by", "agent_note")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HELD_BY_FIELD_NUMBER: _ClassVar[int]
    AGENT_NOTE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    customer_id: str
    channel: str
    created_at: _timestamp_pb2.Timestamp
    handoff: HandoffState
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    messages: _containers.RepeatedCompositeFieldContainer[SessionMessage]
    held_by: str
    agent_note: str
    def __init__(self, session_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., handoff: _Optional[_Union[HandoffState, str]] = ..., turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., messages: _Optional[_Iterable[_Union[SessionMessage, _Mapping]]] = ..., held_by: _Optional[str] = ..., agent_note: _Optional[str] = ...) -> None: ...

class SessionMessage(_message.Message):
    __slots__ = ("id", "author", "text", "time")
    ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    id: int
    author: str
    text: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., author: _Optional[str] = ..., text: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchRepliesRequest(_message.Message):
    __slots__ = ("session_id", "after_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_id: int
    def __init__(self, session_id: _Optional[str] = ..., after_id: _Optional[int] = ...) -> None: ...
