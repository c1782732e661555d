"""The meta document of the Elasticsearch knowledge backend (``<prefix>-meta``, id ``kb``):
the committed knowledge-base version, the token of the write that set it and the id of
the embedder whose vectors the chunks hold. Writing it with optimistic concurrency
(``if_seq_no``/``if_primary_term``) is the commit point of every write."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from elastic_transport import ApiError as TransportApiError
from elastic_transport import TransportError

from services.errors import KefuError, Unavailable
from services.knowledge.elasticsearch_requests import META_ID
from services.knowledge.elasticsearch_responses import map_error, safe_url


@dataclass
class Meta:
    """Committed version, (seq_no, primary_term) for optimistic concurrency (None while
    there is no meta document), the token of the write that set it and the embedder id
    (None when none is recorded: a new index, or one written before kefu recorded it)."""

    version: int
    seq: tuple[int, int] | None
    write: str
    embedder: str | None = None


class Conflict(Unavailable):
    """Another process changed the meta document first."""


async def read_meta(client: Any, index: str, url: str) -> Meta:
    try:
        resp = await client.get(index=index, id=META_ID)
    except TransportApiError as exc:
        if exc.meta is not None and exc.meta.status == 404 and isinstance(exc.body, Mapping) and exc.body.get("found") is False:
            return Meta(0, None, "")
        raise map_error(exc, url) from exc
    except TransportError as exc:
        raise map_error(exc, url) from exc
    source = resp["_source"]
    embedder = source.get("embedder")
    return Meta(
        int(source.get("kb_version", 0)), (int(resp["_seq_no"]), int(resp["_primary_term"])), str(source.get("write", "")),
        None if embedder is None else str(embedder),
    )


async def commit_meta(client: Any, index: str, url: str, base: Meta, new: int, embedder: str) -> tuple[Exception, Meta] | None:
    """Raise the meta document from ``base`` to version ``new`` (recording ``embedder``) if
    nobody changed it since ``base`` was read. None when this write is committed (also when
    a timed-out or retried request turns out to have been applied), else (the failure, the
    meta document now)."""
    token = uuid.uuid4().hex
    document = {"kb_version": new, "write": token, "embedder": embedder}
    try:
        if base.seq is None:
            await client.create(index=index, id=META_ID, document=document)
        else:
            await client.index(index=index, id=META_ID, document=document, if_seq_no=base.seq[0], if_primary_term=base.seq[1])
        return None
    except (TransportApiError, TransportError) as exc:
        failure: Exception = exc
    # The outcome may be unknown (a timeout, or a retry of a request that had in fact
    # been applied): the meta document says whether this write committed.
    try:
        now = await read_meta(client, index, url)
    except KefuError as exc:
        raise Unavailable(
            f"elasticsearch at {safe_url(url)} failed while committing version {new}; "
            f"whether the write was applied is unknown until it answers again ({exc})"
        ) from failure
    return None if now.write == token else (failure, now)


def lost_write(failure: Exception, base: Meta, now: Meta, url: str) -> KefuError:
    """The error of a write whose commit did not apply (its chunks were rolled back)."""
    if isinstance(failure, TransportApiError) and failure.meta is not None and failure.meta.status == 409:
        return Conflict(
            f"another process wrote to the knowledge base at the same time (version {base.version} -> {now.version}); "
            "this write was rolled back, retry it"
        )
    return map_error(failure, url)
