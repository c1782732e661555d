from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErpEventOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERP_EVENT_OUTCOME_UNSPECIFIED: _ClassVar[ErpEventOutcome]
    ERP_EVENT_OUTCOME_ACCEPTED: _ClassVar[ErpEventOutcome]
    ERP_EVENT_OUTCOME_DUPLICATE: _ClassVar[ErpEventOutcome]
ERP_EVENT_OUTCOME_UNSPECIFIED: ErpEventOutcome
ERP_EVENT_OUTCOME_ACCEPTED: ErpEventOutcome
ERP_EVENT_OUTCOME_DUPLICATE: ErpEventOutcome

class ErpEvent(_message.Message):
    __slots__ = ("event_id", "kind", "order_id", "accepted", "reason", "occurred_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: str
    order_id: str
    accepted: bool
    reason: str
    occurred_at: str
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[str] = ..., order_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., occurred_at: _Optional[str] = ...) -> None: ...

class ErpEventReceipt(_message.Message):
    __slots__ = ("outcome", "workflow_id", "status")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    outcome: ErpEventOutcome
    workflow_id: str
    status: str
    def __init__(self, outcome: _Optional[_Union[ErpEventOutcome, str]] = ..., workflow_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class GetReturnRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class ReturnStep(_message.Message):
    __slots__ = ("kind", "at", "text")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    at: str
    text: str
    def __init__(self, kind: _Optional[str] = ..., at: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ReturnStatus(_message.Message):
    __slots__ = ("order_id", "kind", "status", "rma_id", "label", "refund_id", "refund_amount", "refund_method", "refund_status", "tracking_id", "currency", "reason", "ticket_id", "workflow_id", "running", "timeline")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RMA_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    REFUND_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REFUND_METHOD_FIELD_NUMBER: _ClassVar[int]
    REFUND_STATUS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    kind: str
    status: str
    rma_id: str
    label: str
    refund_id: str
    refund_amount: float
    refund_method: str
    refund_status: str
    tracking_id: str
    currency: str
    reason: str
    ticket_id: str
    workflow_id: str
    running: bool
    timeline: _containers.RepeatedCompositeFieldContainer[ReturnStep]
    def __init__(self, order_id: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[str] = ..., rma_id: _Optional[str] = ..., label: _Optional[str] = ..., refund_id: _Optional[str] = ..., refund_amount: _Optional[float] = ..., refund_method: _Optional[str] = ..., refund_status: _Optional[str] = ..., tracking_id: _Optional[str] = ..., currency: _Optional[str] = ..., reason: _Optional[str] = ..., ticket_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., running: _Optional[bool] = ..., timeline: _Optional[_Iterable[_Union[ReturnStep, _Mapping]]] = ...) -> None: ...
