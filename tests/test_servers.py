"""Every service answers the standard health check and lists its contract through reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

CONTRACTS = {"dialog": "kefu.v1.Dialog", "nlu": "kefu.v1.NLU", "knowledge": "kefu.v1.Knowledge", "generation": "kefu.v1.Generation"}


@pytest.mark.parametrize("service", sorted(CONTRACTS))
def test_health_and_reflection(cfg, service):
    with grpc.insecure_channel(cfg.target(service)) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", CONTRACTS[service]):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            health.Check(health_pb2.HealthCheckRequest(service="kefu.v1.NoSuchService"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND

        reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert CONTRACTS[service] in names
    assert "grpc.health.v1.Health" in names
