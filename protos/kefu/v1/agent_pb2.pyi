import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kefu.v1 import dialog_pb2 as _dialog_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ContextTurn(_message.Message):
    __slots__ = ("index", "customer_text", "reply_text", "dissatisfaction", "time")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TEXT_FIELD_NUMBER: _ClassVar[int]
    DISSATISFACTION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    index: int
    customer_text: str
    reply_text: str
    dissatisfaction: float
    time: _timestamp_pb2.Timestamp
    def __init__(self, index: _Optional[int] = ..., customer_text: _Optional[str] = ..., reply_text: _Optional[str] = ..., dissatisfaction: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ContextPacket(_message.Message):
    __slots__ = ("summary", "reason", "intent", "intent_confidence", "flow", "requested_slot", "slots", "store_customer_id", "dissatisfaction", "order_ids", "last_turns")
    class SlotsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    INTENT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_SLOT_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    STORE_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DISSATISFACTION_FIELD_NUMBER: _ClassVar[int]
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    LAST_TURNS_FIELD_NUMBER: _ClassVar[int]
    summary: str
    reason: str
    intent: str
    intent_confidence: float
    flow: str
    requested_slot: str
    slots: _containers.ScalarMap[str, str]
    store_customer_id: str
    dissatisfaction: _containers.RepeatedScalarFieldContainer[float]
    order_ids: _containers.RepeatedScalarFieldContainer[str]
    last_turns: _containers.RepeatedCompositeFieldContainer[ContextTurn]
    def __init__(self, summary: _Optional[str] = ..., reason: _Optional[str] = ..., intent: _Optional[str] = ..., intent_confidence: _Optional[float] = ..., flow: _Optional[str] = ..., requested_slot: _Optional[str] = ..., slots: _Optional[_Mapping[str, str]] = ..., store_customer_id: _Optional[str] = ..., dissatisfaction: _Optional[_Iterable[float]] = ..., order_ids: _Optional[_Iterable[str]] = ..., last_turns: _Optional[_Iterable[_Union[ContextTurn, _Mapping]]] = ...) -> None: ...

class QueuedTicket(_message.Message):
    __slots__ = ("ticket_id", "session_id", "category", "status", "priority", "language", "created_at", "held_by", "context")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HELD_BY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    session_id: str
    category: str
    status: str
    priority: str
    language: str
    created_at: _timestamp_pb2.Timestamp
    held_by: str
    context: ContextPacket
    def __init__(self, ticket_id: _Optional[str] = ..., session_id: _Optional[str] = ..., category: _Optional[str] = ..., status: _Optional[str] = ..., priority: _Optional[str] = ..., language: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., held_by: _Optional[str] = ..., context: _Optional[_Union[ContextPacket, _Mapping]] = ...) -> None: ...

class ListQueueRequest(_message.Message):
    __slots__ = ("include_claimed", "limit")
    INCLUDE_CLAIMED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    include_claimed: bool
    limit: int
    def __init__(self, include_claimed: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListQueueResponse(_message.Message):
    __slots__ = ("tickets",)
    TICKETS_FIELD_NUMBER: _ClassVar[int]
    tickets: _containers.RepeatedCompositeFieldContainer[QueuedTicket]
    def __init__(self, tickets: _Optional[_Iterable[_Union[QueuedTicket, _Mapping]]] = ...) -> None: ...

class ClaimRequest(_message.Message):
    __slots__ = ("agent_id", "ticket_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    ticket_id: str
    def __init__(self, agent_id: _Optional[str] = ..., ticket_id: _Optional[str] = ...) -> None: ...

class ClaimResponse(_message.Message):
    __slots__ = ("ticket",)
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ticket: QueuedTicket
    def __init__(self, ticket: _Optional[_Union[QueuedTicket, _Mapping]] = ...) -> None: ...

class AgentReplyRequest(_message.Message):
    __slots__ = ("agent_id", "ticket_id", "text", "request_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    ticket_id: str
    text: str
    request_id: str
    def __init__(self, agent_id: _Optional[str] = ..., ticket_id: _Optional[str] = ..., text: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AgentReplyResponse(_message.Message):
    __slots__ = ("message_id", "session_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    session_id: str
    def __init__(self, message_id: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class HandBackRequest(_message.Message):
    __slots__ = ("agent_id", "ticket_id", "note")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    ticket_id: str
    note: str
    def __init__(self, agent_id: _Optional[str] = ..., ticket_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class HandBackResponse(_message.Message):
    __slots__ = ("session_id", "handoff")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    handoff: _dialog_pb2.HandoffState
    def __init__(self, session_id: _Optional[str] = ..., handoff: _Optional[_Union[_dialog_pb2.HandoffState, str]] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("agent_id", "ticket_id", "note")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    ticket_id: str
    note: str
    def __init__(self, agent_id: _Optional[str] = ..., ticket_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("session_id", "handoff")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    handoff: _dialog_pb2.HandoffState
    def __init__(self, session_id: _Optional[str] = ..., handoff: _Optional[_Union[_dialog_pb2.HandoffState, str]] = ...) -> None: ...

class WatchSessionRequest(_message.Message):
    __slots__ = ("ticket_id", "after_turn")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_TURN_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    after_turn: int
    def __init__(self, ticket_id: _Optional[str] = ..., after_turn: _Optional[int] = ...) -> None: ...

class CustomerMessage(_message.Message):
    __slots__ = ("session_id", "turn_index", "text", "time")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    turn_index: int
    text: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., turn_index: _Optional[int] = ..., text: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
