"""Domain errors of the kefu cores, and their mapping to gRPC status codes.

Cores raise these plain exceptions; servicers never let a stack trace reach a
client: ``grpc_errors`` turns them into status codes with clear messages and
anything unexpected into INTERNAL with a reference the operator can grep for.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from typing import Any, Callable

import grpc

log = logging.getLogger(__name__)


class KefuError(Exception):
    """Base of errors that carry a message meant for the caller."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(KefuError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(KefuError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(KefuError):
    """The request is well formed but the thing it acts on is not in a state that allows it
    (an event a workflow does not wait for, a ticket another agent holds); nothing changed."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(KefuError):
    """A dependency (another service, Triton, Temporal) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(KefuError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(KefuError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def require_text(text: str, *, field: str, max_chars: int) -> str:
    """Validate a customer-supplied text field; returns it stripped."""
    stripped = (text or "").strip()
    if not stripped:
        raise InvalidArgument(f"{field} must not be empty")
    if len(stripped) > max_chars:
        raise InvalidArgument(f"{field} is too long: {len(stripped)} characters, at most {max_chars} allowed")
    return stripped


def from_rpc_error(err: grpc.RpcError, dependency: str) -> KefuError:
    """Translate a failed call to another service into a domain error."""
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return Unavailable(f"{dependency} is unavailable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"{dependency} did not answer in time")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details or f"{dependency} rejected the request")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details or f"{dependency}: not found")
    return KefuError(f"{dependency} failed: {code.name if code else 'error'}")


def _busy(exc: BaseException) -> bool:
    """A SQLite database held by another writer past its busy timeout: the call may be
    retried, nothing was written (each write is one transaction)."""
    import sqlite3

    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _state_unreachable(exc: BaseException) -> bool:
    """PostgreSQL (``state.postgres_dsn``) cannot be reached or dropped the connection:
    the call may be retried, its transaction was rolled back."""
    import sys

    psycopg = sys.modules.get("psycopg")  # only loaded when the state is in PostgreSQL
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def state_error(exc: BaseException) -> BaseException:
    """A state-database failure a caller may retry as UNAVAILABLE; anything else as it is."""
    if _busy(exc):
        return Unavailable("the conversation store is busy (database is locked); please retry in a moment")
    if _state_unreachable(exc):
        return Unavailable(f"the state database (PostgreSQL) is unavailable: {str(exc).strip()[:300]}; please retry in a moment")
    return exc


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if _busy(exc) or _state_unreachable(exc):
        log.warning("%s: state database unavailable: %s", method, exc)
        exc = state_error(exc)
    if isinstance(exc, KefuError):
        message = str(exc)
        if len(message) > 1000:  # an id or text echoed from a huge request: keep the status readable
            message = message[:1000] + "…"
        await context.abort(exc.code, message)
    ref = uuid.uuid4().hex[:12]
    log.exception("unexpected error in %s (ref %s)", method, ref)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (ref {ref})")


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a grpc.aio servicer method (unary or server-streaming)."""
    name = method.__qualname__

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except (grpc.aio.AbortError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a status, never leaked
                await _abort(context, exc, name)

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort(context, exc, name)

    return unary_wrapper
