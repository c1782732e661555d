"""Transport security and who may call what (cfg.security; off for local ``make up``,
on in the Helm chart).

* **TLS**: with ``tls_cert``/``tls_key`` every kefu server listens with TLS; with
  ``tls_client_ca`` it also requires a client certificate signed by that CA (mutual TLS).
  Clients (kefu's own services, ``kefu chat``, ``kefu agent``...) verify servers with
  ``tls_ca`` and present ``tls_client_cert``/``tls_client_key`` when set.
* **API keys with roles** (``api_keys``: a file, one key per line,
  ``role name sha256-of-key [customer-id]``; ``kefu keys new`` makes one): ``channel``
  (chat only: Converse, GetSession, WatchReplies), ``agent`` (the agent desk, and reading
  any session), ``admin`` (everything: ingest, store, models, ERP events), ``service``
  (kefu's services calling each other). Health and reflection are open. A key travels
  as ``authorization: Bearer <key>`` call credentials, so only over TLS.
* **Customers see their own sessions only**: a channel key bound to a customer, or the
  ``kefu-customer-id`` metadata the channel sets for the customer it authenticated, is
  the only customer whose sessions that call may read or continue.
* **Audit log**: every call by an agent or an admin is appended (JSON lines) to
  ``audit_log`` before it runs.
* **Rate limits** (Dialog): turns per minute per customer and per session; beyond them
  RESOURCE_EXHAUSTED with how long to wait (also as ``retry-after-ms`` trailing metadata).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import grpc

ROLES = ("channel", "agent", "admin", "service")
CUSTOMER_METADATA = "kefu-customer-id"
# Who may call what, by full method name or service prefix; admin may call everything.
_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_METHOD_ROLES: dict[str, tuple[str, ...]] = {
    "/kefu.v1.Dialog/Converse": ("channel", "agent", "service"),
    "/kefu.v1.Dialog/GetSession": ("channel", "agent", "service"),
    "/kefu.v1.Dialog/WatchReplies": ("channel", "agent", "service"),
    "/kefu.v1.AgentDesk/": ("agent",),
    "/kefu.v1.ErpEvents/": ("service",),
    "/kefu.v1.NLU/": ("service",),
    "/kefu.v1.Knowledge/Search": ("service",),
    "/kefu.v1.Knowledge/": (),  # ingest and delete: admin only
    "/kefu.v1.Generation/": ("service",),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's role and name, and the customer a channel call is for ("" any)."""

    role: str
    name: str
    customer_id: str = ""


_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("kefu_caller", default=None)


def caller() -> Principal | None:
    """The principal of the current call (None when authentication is off)."""
    return _CALLER.get()


def allowed(method: str, role: str) -> bool:
    if role == "admin" or method.startswith(_OPEN):
        return True
    for prefix, roles in sorted(_METHOD_ROLES.items(), key=lambda item: -len(item[0])):
        if method == prefix or (prefix.endswith("/") and method.startswith(prefix)):
            return role in roles
    return False


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    role: str
    name: str
    customer_id: str = ""


def load_keys(path: str | os.PathLike[str]) -> dict[str, KeyEntry]:
    """The keys file: ``role name sha256 [customer-id]`` per line, ``#`` comments.
    ``ValueError`` naming the line when one is wrong."""
    keys: dict[str, KeyEntry] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (3, 4) or parts[0] not in ROLES or len(parts[2]) != 64:
            raise ValueError(f"{path}:{number}: expected 'role name sha256 [customer-id]' with role one of {', '.join(ROLES)}")
        keys[parts[2].lower()] = KeyEntry(parts[0], parts[1], parts[3] if len(parts) == 4 else "")
    return keys


class AuditLog:
    """Append-only JSON lines; one ``write`` per line, so concurrent processes do not interleave."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, principal: Principal, method: str, peer: str) -> None:
        line = json.dumps(
            {"at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "role": principal.role, "who": principal.name,
             "customer": principal.customer_id, "method": method, "peer": peer},
            ensure_ascii=False,
        ) + "\n"
        with self._lock:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks every call's key and role before its handler runs, records agent and admin
    calls, and makes the caller known to the servicer (``caller()``)."""

    def __init__(self, keys: dict[str, KeyEntry], audit: AuditLog | None) -> None:
        self._keys = keys
        self._audit = audit

    async def intercept_service(self, continuation, handler_call_details):  # noqa: ANN001, ANN201 - grpc's types
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN):
            return handler
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ())}
        return _guarded(handler, lambda context: self._authorize(method, metadata, context))

    def _authorize(self, method: str, metadata: dict[str, Any], context: grpc.aio.ServicerContext) -> Principal | tuple[grpc.StatusCode, str]:
        token = str(metadata.get("authorization", ""))
        key = token[7:].strip() if token.lower().startswith("bearer ") else ""
        entry = self._keys.get(key_digest(key)) if key else None
        if entry is None:
            return grpc.StatusCode.UNAUTHENTICATED, "a valid API key is required (authorization: Bearer <key>)"
        if not allowed(method, entry.role):
            return grpc.StatusCode.PERMISSION_DENIED, f"the {entry.role} role may not call {method}"
        asserted = str(metadata.get(CUSTOMER_METADATA, ""))
        if entry.customer_id and asserted and asserted != entry.customer_id:
            return grpc.StatusCode.PERMISSION_DENIED, "this key is bound to another customer"
        principal = Principal(entry.role, entry.name, entry.customer_id or (asserted if entry.role == "channel" else ""))
        if self._audit is not None and entry.role in ("agent", "admin"):
            self._audit.record(principal, method, context.peer())
        return principal


def _guarded(handler: grpc.RpcMethodHandler, authorize: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """The same handler with the check (and the caller set) before its behaviour."""

    async def check(context: grpc.aio.ServicerContext) -> None:
        result = authorize(context)
        if isinstance(result, tuple):
            await context.abort(*result)
        _CALLER.set(result)

    if handler.unary_unary:
        async def unary_unary(request, context):  # noqa: ANN001, ANN202
            await check(context)
            return await handler.unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        async def unary_stream(request, context):  # noqa: ANN001, ANN202
            await check(context)
            async for item in handler.unary_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        async def stream_unary(requests, context):  # noqa: ANN001, ANN202
            await check(context)
            return await handler.stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, handler.request_deserializer, handler.response_serializer)

    async def stream_stream(requests, context):  # noqa: ANN001, ANN202
        await check(context)
        async for item in handler.stream_stream(requests, context):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, handler.request_deserializer, handler.response_serializer)


# -- transport ------------------------------------------------------------------------


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def server_credentials(sec: Any) -> grpc.ServerCredentials | None:
    """TLS (mutual when ``tls_client_ca`` is set) for a server; None for plaintext."""
    if not sec.tls_cert:
        return None
    if not sec.tls_key:
        raise ValueError("security.tls_cert needs security.tls_key")
    return grpc.ssl_server_credentials(
        [(_read(sec.tls_key), _read(sec.tls_cert))], root_certificates=_read(sec.tls_client_ca),
        require_client_auth=bool(sec.tls_client_ca),
    )


def channel_credentials(sec: Any, *, key: str = "") -> grpc.ChannelCredentials | None:
    """TLS credentials for a client (with the client certificate for mutual TLS and the
    API key as call credentials); None when the servers are plaintext."""
    if not sec.tls_ca:
        if key:
            raise ValueError("an API key is only sent over TLS: set security.tls_ca")
        return None
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(sec.tls_ca), private_key=_read(sec.tls_client_key), certificate_chain=_read(sec.tls_client_cert)
    )
    if key:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(key))
    return creds


def channel_options(sec: Any) -> list[tuple[str, Any]]:
    # Certificates name the service (e.g. "kefu-dialog"); a pod reaches it by another host name.
    return [("grpc.ssl_target_name_override", sec.tls_server_name)] if sec.tls_ca and sec.tls_server_name else []


def sync_channel(target: str, sec: Any, *, key: str = "", options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A blocking channel for the CLIs (``kefu chat``, ``kefu agent``, ``kefu erp``...)."""
    creds = channel_credentials(sec, key=key) if sec is not None else None
    opts = [*(options or []), *(channel_options(sec) if sec is not None else [])]
    return grpc.secure_channel(target, creds, options=opts) if creds else grpc.insecure_channel(target, options=opts)


def aio_channel(target: str, sec: Any, *, key: str = "", options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """An asyncio channel for the CLIs (``kefu ingest``)."""
    creds = channel_credentials(sec, key=key) if sec is not None else None
    opts = [*(options or []), *(channel_options(sec) if sec is not None else [])]
    return grpc.aio.secure_channel(target, creds, options=opts) if creds else grpc.aio.insecure_channel(target, options=opts)


def client_metadata(customer_id: str = "") -> list[tuple[str, str]]:
    return [(CUSTOMER_METADATA, customer_id)] if customer_id else []


class RateLimiter:
    """Token buckets: ``per_minute`` turns per key, refilled continuously; ``take`` says
    how many seconds to wait when the bucket is empty (0 when the turn may go)."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._rate = per_minute / 60.0
        self._burst = max(1.0, per_minute)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_keys = max_keys

    def take(self, key: str) -> float:
        if self._rate <= 0 or not key:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()  # bounded memory; a burst of new keys resets the oldest counts
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0


def add_keys_commands(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    keys = sub.add_parser("keys", help="API keys with roles (channel, agent, admin, service) for security.api_keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="make a key: prints it once, and the line to add to the keys file")
    new.add_argument("--role", required=True, choices=ROLES)
    new.add_argument("--name", required=True, help="who holds it (in the audit log), e.g. web-channel, agent-wang")
    new.add_argument("--customer", default="", help="channel keys: the only customer whose sessions it may read")
    new.set_defaults(func=_cmd_new_key)


def _cmd_new_key(args: Any) -> int:
    import secrets

    if any(c.isspace() for c in args.name + args.customer) or not args.name:
        print("kefu keys: --name and --customer must be single words", file=__import__("sys").stderr)
        return 2
    key = "kefu_" + secrets.token_urlsafe(32)
    line = " ".join(p for p in (args.role, args.name, key_digest(key), args.customer) if p)
    print(f"key (shown once; give it to {args.name}): {key}")
    print(f"line for the keys file (security.api_keys):\n{line}")
    return 0
