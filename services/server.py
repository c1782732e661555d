"""Running one kefu service as a grpc.aio server.

Every service gets the standard health service, reflection, OpenTelemetry
server instrumentation and graceful shutdown: on SIGTERM/SIGINT it reports
NOT_SERVING, stops taking new calls and lets in-flight calls (including
streams) finish within ``grace_s``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services import security, telemetry

log = logging.getLogger(__name__)

# Largest message accepted or sent, in bytes (knowledge documents can be big).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Short reconnect backoff for channels to other servers (kefu services, Triton):
# after a peer (re)starts, callers find it again within a couple of seconds, not
# after gRPC's default backoff, which grows to two minutes while the peer is down.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


# The process's transport and authentication settings (cfg.security), set once at start
# by ``configure``; plaintext and open until then.
_SECURITY: Any = None
_HOME: Path | None = None


def configure(security: Any, home: Path | None = None) -> None:
    global _SECURITY, _HOME
    _SECURITY, _HOME = security, home


def channel(target: str) -> grpc.aio.Channel:
    """A channel to another kefu service that propagates the trace context (TLS and the
    service's key when security is configured)."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        *RECONNECT_OPTIONS,
    ]
    creds = None
    if _SECURITY is not None:
        creds = security.channel_credentials(_SECURITY, key=_SECURITY.service_key)
        options += security.channel_options(_SECURITY)
    if creds is not None:
        return grpc.aio.secure_channel(target, creds, interceptors=telemetry.client_interceptors(), options=options)
    return grpc.aio.insecure_channel(target, interceptors=telemetry.client_interceptors(), options=options)


def _server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    interceptors = list(telemetry.server_interceptors())
    if _SECURITY is not None and _SECURITY.api_keys:
        audit = security.AuditLog(_SECURITY.audit_log or (_HOME or Path(".")) / "audit.log")
        interceptors.append(security.AuthInterceptor(security.load_keys(_SECURITY.api_keys), audit))
    return interceptors


@dataclass
class ServiceSpec:
    """What a service contributes to its server."""

    name: str  # e.g. "nlu"
    # Adds the servicers; returns the full names of the gRPC services added.
    register: Callable[[grpc.aio.Server], list[str]]
    # Awaited after the server has stopped (close channels, flush stores).
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


async def serve(spec: ServiceSpec, address: str, *, grace_s: float = 30.0) -> None:
    server = grpc.aio.server(
        interceptors=_server_interceptors(),
        options=[
            ("grpc.max_receive_message_length", _SECURITY.max_request_bytes if _SECURITY is not None else MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    names = spec.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    creds = security.server_credentials(_SECURITY) if _SECURITY is not None else None
    bound = server.add_secure_port(address, creds) if creds is not None else server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"cannot bind {address}")
    await server.start()
    probe_server = None
    if creds is not None and _SECURITY.health_port:
        # Kubernetes' gRPC probes speak plaintext: health, and nothing else, on its own port.
        probe_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe_server)
        probe_address = f"{address.rsplit(':', 1)[0]}:{_SECURITY.health_port}"
        if probe_server.add_insecure_port(probe_address) == 0:
            raise RuntimeError(f"cannot bind the health port {probe_address}")
        await probe_server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("kefu %s serving on %s", spec.name, address)
    print(f"kefu {spec.name} ready on {address}", flush=True)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()

    log.info("kefu %s stopping: finishing in-flight calls (up to %.0f s)", spec.name, grace_s)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_s)
    if probe_server is not None:
        await probe_server.stop(0)
    for hook in spec.on_stop:
        await hook()
    telemetry.shutdown_tracing()
    print(f"kefu {spec.name} stopped", flush=True)
