from kefu.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrievalMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRIEVAL_MODE_UNSPECIFIED: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_HYBRID: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_BM25: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_DENSE: _ClassVar[RetrievalMode]

class DocumentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_KIND_UNSPECIFIED: _ClassVar[DocumentKind]
    DOCUMENT_KIND_FAQ: _ClassVar[DocumentKind]
    DOCUMENT_KIND_ARTICLE: _ClassVar[DocumentKind]
RETRIEVAL_MODE_UNSPECIFIED: RetrievalMode
RETRIEVAL_MODE_HYBRID: RetrievalMode
RETRIEVAL_MODE_BM25: RetrievalMode
RETRIEVAL_MODE_DENSE: RetrievalMode
DOCUMENT_KIND_UNSPECIFIED: DocumentKind
DOCUMENT_KIND_FAQ: DocumentKind
DOCUMENT_KIND_ARTICLE: DocumentKind

class SearchRequest(_message.Message):
    __slots__ = ("query", "locales", "tags", "top_k", "mode", "query_embedding", "embedder_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    LOCALES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    QUERY_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    locales: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    mode: RetrievalMode
    query_embedding: _containers.RepeatedScalarFieldContainer[float]
    embedder_id: str
    def __init__(self, query: _Optional[str] = ..., locales: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., mode: _Optional[_Union[RetrievalMode, str]] = ..., query_embedding: _Optional[_Iterable[float]] = ..., embedder_id: _Optional[str] = ...) -> None: ...

class RetrievalHit(_message.Message):
    __slots__ = ("doc_id", "chunk_id", "title", "text", "matched_question", "score", "locale", "tags", "citation", "dense_score", "lexical_score", "answerability")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MATCHED_QUESTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    DENSE_SCORE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    ANSWERABILITY_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    chunk_id: str
    title: str
    text: str
    matched_question: str
    score: float
    locale: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    citation: _common_pb2.Citation
    dense_score: float
    lexical_score: float
    answerability: float
    def __init__(self, doc_id: _Optional[str] = ..., chunk_id: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., matched_question: _Optional[str] = ..., score: _Optional[float] = ..., locale: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., citation: _Optional[_Union[_common_pb2.Citation, _Mapping]] = ..., dense_score: _Optional[float] = ..., lexical_score: _Optional[float] = ..., answerability: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "answerable", "answerability", "kb_version", "degraded")
    HITS_FIELD_NUMBER: _ClassVar[int]
    ANSWERABLE_FIELD_NUMBER: _ClassVar[int]
    ANSWERABILITY_FIELD_NUMBER: _ClassVar[int]
    KB_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[RetrievalHit]
    answerable: bool
    answerability: float
    kb_version: int
    degraded: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[RetrievalHit, _Mapping]]] = ..., answerable: _Optional[bool] = ..., answerability: _Optional[float] = ..., kb_version: _Optional[int] = ..., degraded: _Optional[bool] = ...) -> None: ...

class KnowledgeDocument(_message.Message):
    __slots__ = ("id", "kind", "title", "locale", "tags", "questions", "answer", "body")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: DocumentKind
    title: str
    locale: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    questions: _containers.RepeatedScalarFieldContainer[str]
    answer: str
    body: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[DocumentKind, str]] = ..., title: _Optional[str] = ..., locale: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., questions: _Optional[_Iterable[str]] = ..., answer: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: KnowledgeDocument
    def __init__(self, document: _Optional[_Union[KnowledgeDocument, _Mapping]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("ingested", "chunks", "kb_version")
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    KB_VERSION_FIELD_NUMBER: _ClassVar[int]
    ingested: int
    chunks: int
    kb_version: int
    def __init__(self, ingested: _Optional[int] = ..., chunks: _Optional[int] = ..., kb_version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "not_found", "kb_version")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    KB_VERSION_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    not_found: _containers.RepeatedScalarFieldContainer[str]
    kb_version: int
    def __init__(self, deleted: _Optional[int] = ..., not_found: _Optional[_Iterable[str]] = ..., kb_version: _Optional[int] = ...) -> None: ...
