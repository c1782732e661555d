"""Security on (as the Helm chart runs it): mutual TLS between every client and server,
API keys with roles, customers limited to their own sessions, an audit log of agent and
admin calls, rate limits and request size limits. A kefu of its own (NLU, Knowledge,
Generation, Dialog) with test certificates made by the suite (openssl), on the suite's
Triton and Temporal."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kefu.v1 import agent_pb2, agent_pb2_grpc, dialog_pb2, dialog_pb2_grpc, knowledge_pb2, knowledge_pb2_grpc
from services.config import REPO_ROOT, KefuConfig, to_env
from services.security import RateLimiter, allowed, key_digest, load_keys
from services.stack import KefuStack
from tests.triton_fixtures import free_ports

KEYS = {
    "channel-c1": ("channel", "web-c1", "C00001"),  # bound to one customer
    "channel-any": ("channel", "web", ""),  # says which customer with kefu-customer-id
    "agent": ("agent", "agent-wang", ""),
    "admin": ("admin", "ops", ""),
    "service": ("service", "kefu", ""),
}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate, and a
    client certificate from a CA the servers do not trust."""
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=kefu test {ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ca, ext in (("server", "ca", ["-extfile", "server.ext"]), ("client", "ca", []), ("rogue", "rogue-ca", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=kefu test {name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
                 "-out", f"{name}.pem", *ext, cwd=d)
    return {p.stem + p.suffix: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def secure(cfg: KefuConfig, tmp_path_factory) -> Iterator[KefuConfig]:
    d = tmp_path_factory.mktemp("pki")
    make_pki(d)
    keys_file = d / "keys.txt"
    keys_file.write_text("# test keys\n" + "".join(f"{role} {name} {key_digest(key)} {customer}\n" for key, (role, name, customer) in KEYS.items()))
    own = copy.deepcopy(cfg)
    own.home = str(tmp_path_factory.mktemp("secure-home"))
    own.ports.nlu, own.ports.knowledge, own.ports.generation, own.ports.dialog = free_ports(4)
    sec = own.security
    sec.tls_cert, sec.tls_key, sec.tls_client_ca = str(d / "server.pem"), str(d / "server.key"), str(d / "ca.pem")
    sec.tls_ca, sec.tls_client_cert, sec.tls_client_key = str(d / "ca.pem"), str(d / "client.pem"), str(d / "client.key")
    sec.api_keys, sec.service_key, sec.audit_log = str(keys_file), "service", str(Path(own.home) / "audit.log")
    sec.session_turns_per_min = 3
    sec.max_request_bytes = 64 * 1024
    own.dialog.answer_style = "verbatim"
    stack = KefuStack(own, with_triton=False, progress=lambda line: None)
    # Dialog also serves health in plaintext on a port of its own (for Kubernetes' probes);
    # one host here, so only Dialog's server binds it.
    with_probe = copy.deepcopy(own)
    (with_probe.security.health_port,) = free_ports(1)
    dialog = KefuStack(with_probe, with_triton=False, progress=lambda line: None)
    try:
        for name in ("generation", "nlu", "knowledge"):
            stack.start_service(name)
        dialog.start_service("dialog")
        for name in ("generation", "nlu", "knowledge"):
            stack.wait_service(name, timeout=240)
        dialog.wait_service("dialog", timeout=240)
        yield with_probe
    finally:
        dialog.stop()
        stack.stop()


def tls(own: KefuConfig, *, client_cert: str = "client", key: str = "") -> grpc.Channel:
    d = Path(own.security.tls_ca).parent
    creds = grpc.ssl_channel_credentials(
        root_certificates=(d / "ca.pem").read_bytes(),
        private_key=(d / f"{client_cert}.key").read_bytes() if client_cert else None,
        certificate_chain=(d / f"{client_cert}.pem").read_bytes() if client_cert else None,
    )
    if key:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(key))
    return grpc.secure_channel(own.target("dialog"), creds)


def turn(channel: grpc.Channel, text: str, session_id: str = "", customer: str = "") -> dialog_pb2.TurnResult:
    metadata = [("kefu-customer-id", customer)] if customer else None
    events = list(dialog_pb2_grpc.DialogStub(channel).Converse(dialog_pb2.TurnRequest(text=text, session_id=session_id), timeout=120, metadata=metadata))
    return events[-1].result


def code_of(call) -> grpc.StatusCode:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


# -- without the stack -------------------------------------------------------------------
def test_roles_allow_what_they_should():
    assert allowed("/kefu.v1.Dialog/Converse", "channel") and not allowed("/kefu.v1.AgentDesk/Claim", "channel")
    assert allowed("/kefu.v1.AgentDesk/Claim", "agent") and not allowed("/kefu.v1.Knowledge/Ingest", "agent")
    assert allowed("/kefu.v1.Knowledge/Search", "service") and not allowed("/kefu.v1.Knowledge/Ingest", "service")
    assert allowed("/kefu.v1.Knowledge/Ingest", "admin") and allowed("/kefu.v1.ErpEvents/Report", "admin")
    assert allowed("/grpc.health.v1.Health/Check", "") and not allowed("/kefu.v1.NLU/Analyze", "channel")


def test_a_bad_keys_file_names_the_line(tmp_path):
    bad = tmp_path / "keys.txt"
    bad.write_text("admin ops " + "0" * 64 + "\nsuperuser x " + "1" * 64 + "\n")
    with pytest.raises(ValueError, match="keys.txt:2"):
        load_keys(bad)


def test_rate_limiter_refills_and_says_how_long_to_wait():
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])  # 3 a minute: one every 20 s, bursts of 3
    assert [limiter.take("s") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("s") == pytest.approx(20.0)
    assert limiter.take("other") == 0.0
    now[0] = 20.0
    assert limiter.take("s") == 0.0
    assert RateLimiter(0).take("s") == 0.0  # 0: unlimited


# -- a secure kefu -----------------------------------------------------------------------
def test_plaintext_and_clients_without_a_trusted_certificate_are_refused(secure):
    with grpc.insecure_channel(secure.target("dialog")) as plain:
        assert code_of(lambda: health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)) == grpc.StatusCode.UNAVAILABLE
    for cert in ("", "rogue"):  # mutual TLS: no client certificate, or one from another CA
        with tls(secure, client_cert=cert) as channel:
            assert code_of(lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)) == grpc.StatusCode.UNAVAILABLE
    with tls(secure) as channel:  # health is open to a trusted client without a key
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def test_the_plaintext_health_port_serves_health_and_nothing_else(secure):
    with grpc.insecure_channel(f"127.0.0.1:{secure.security.health_port}") as probe:
        assert health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        assert code_of(lambda: turn(probe, "你好")) == grpc.StatusCode.UNIMPLEMENTED


def test_calls_need_a_key_and_a_role_that_allows_them(secure):
    with tls(secure) as channel:
        assert code_of(lambda: turn(channel, "你好")) == grpc.StatusCode.UNAUTHENTICATED
    with tls(secure, key="not-a-key") as channel:
        assert code_of(lambda: turn(channel, "你好")) == grpc.StatusCode.UNAUTHENTICATED
    with tls(secure, key="channel-any") as channel:
        queue = agent_pb2_grpc.AgentDeskStub(channel)
        assert code_of(lambda: queue.ListQueue(agent_pb2.ListQueueRequest(), timeout=30)) == grpc.StatusCode.PERMISSION_DENIED
    knowledge = secure.target("knowledge")
    d = Path(secure.security.tls_ca).parent
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials((d / "ca.pem").read_bytes(), (d / "client.key").read_bytes(), (d / "client.pem").read_bytes()),
        grpc.access_token_call_credentials("agent"),
    )
    with grpc.secure_channel(knowledge, creds) as channel:
        ingest = knowledge_pb2_grpc.KnowledgeStub(channel).Delete
        assert code_of(lambda: ingest(knowledge_pb2.DeleteRequest(ids=["returns-7day-en"]), timeout=30)) == grpc.StatusCode.PERMISSION_DENIED
    audit_before = Path(secure.security.audit_log).read_text().count("\n") if Path(secure.security.audit_log).exists() else 0
    with tls(secure, key="admin") as channel:
        agent_pb2_grpc.AgentDeskStub(channel).ListQueue(agent_pb2.ListQueueRequest(), timeout=30)
    lines = Path(secure.security.audit_log).read_text().splitlines()
    assert len(lines) == audit_before + 1
    entry = json.loads(lines[-1])
    assert (entry["role"], entry["who"], entry["method"]) == ("admin", "ops", "/kefu.v1.AgentDesk/ListQueue")


def test_a_customer_reads_and_continues_only_its_own_sessions(secure):
    with tls(secure, key="channel-c1") as channel:
        first = turn(channel, "What is your return policy?")
        # Dialog reached NLU, Knowledge and Generation over mutual TLS with the service key.
        assert first.citations and first.citations[0].doc_id == "returns-7day-en" and not first.degraded
        session = dialog_pb2_grpc.DialogStub(channel).GetSession(dialog_pb2.GetSessionRequest(session_id=first.session_id), timeout=30)
        assert session.customer_id == "C00001"  # the key's customer, whatever the request said
        assert code_of(lambda: turn(channel, "hi", customer="C00002")) == grpc.StatusCode.PERMISSION_DENIED
    with tls(secure, key="channel-any") as channel:
        stub = dialog_pb2_grpc.DialogStub(channel)
        other = [("kefu-customer-id", "C00002")]
        assert code_of(lambda: stub.GetSession(dialog_pb2.GetSessionRequest(session_id=first.session_id), timeout=30, metadata=other)) == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: turn(channel, "and exchanges?", first.session_id, customer="C00002")) == grpc.StatusCode.NOT_FOUND
        mine = [("kefu-customer-id", "C00001")]
        assert stub.GetSession(dialog_pb2.GetSessionRequest(session_id=first.session_id), timeout=30, metadata=mine).session_id == first.session_id
    with tls(secure, key="agent") as channel:  # agents read any session
        assert dialog_pb2_grpc.DialogStub(channel).GetSession(dialog_pb2.GetSessionRequest(session_id=first.session_id), timeout=30).turns


def test_too_many_turns_in_a_session_are_refused_with_a_retry_hint(secure):
    with tls(secure, key="channel-any") as channel:
        first = turn(channel, "Do you ship abroad?")
        turn(channel, "How long does shipping take?", first.session_id)
        turn(channel, "Can I get an invoice?", first.session_id)
        call = dialog_pb2_grpc.DialogStub(channel).Converse(dialog_pb2.TurnRequest(text="hello?", session_id=first.session_id), timeout=60)
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry in" in err.value.details()
        hint = dict(err.value.trailing_metadata() or ())
        assert 0 < int(hint["retry-after-ms"]) <= 20_001
        assert len(dialog_pb2_grpc.DialogStub(channel).GetSession(dialog_pb2.GetSessionRequest(session_id=first.session_id), timeout=30).turns) == 3


def test_an_oversized_request_is_refused(secure):
    with tls(secure, key="channel-any") as channel:
        assert code_of(lambda: turn(channel, "x" * (100 * 1024))) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_kefu_chat_and_kefu_agent_speak_tls_with_their_key(secure):
    env = dict(os.environ)
    env.pop("KEFU_CONFIG", None)
    env.update(to_env(secure))
    env["KEFU_SECURITY_CLIENT_KEY"] = "channel-any"
    chat = subprocess.run([sys.executable, "-m", "services.cli", "chat", "-m", "Do you ship abroad?", "--customer", "C00003"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert chat.returncode == 0, chat.stderr
    env["KEFU_SECURITY_CLIENT_KEY"] = "channel-any"
    agent = subprocess.run([sys.executable, "-m", "services.cli", "agent", "queue"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert agent.returncode == 1 and "PERMISSION_DENIED" in agent.stderr
    env["KEFU_SECURITY_CLIENT_KEY"] = "agent"
    agent = subprocess.run([sys.executable, "-m", "services.cli", "agent", "queue"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert agent.returncode == 0, agent.stderr
