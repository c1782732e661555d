"""The committed stubs are what scripts/gen_protos.py makes from the .proto files."""

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_fresh():
    problems = _gen_module().stale_stubs()
    assert problems == [], "stubs are stale; run `make protos`:\n" + "\n".join(problems)


def test_a_changed_proto_is_detected_as_stale(tmp_path, monkeypatch):
    gen = _gen_module()
    copy = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", copy)
    nlu = copy / "kefu" / "v1" / "nlu.proto"
    nlu.write_text(nlu.read_text(encoding="utf-8").replace("int32 top_k = 5;", "int32 top_k = 5;\n  string extra = 6;"), encoding="utf-8")
    monkeypatch.setattr(gen, "PROTO_ROOT", copy)
    monkeypatch.setattr(gen, "PACKAGE_DIR", copy / "kefu" / "v1")
    problems = gen.stale_stubs()
    assert any("nlu_pb2" in p for p in problems)


def test_every_service_has_its_contract():
    from kefu.v1 import agent_pb2, dialog_pb2, generation_pb2, knowledge_pb2, nlu_pb2

    methods = {
        "NLU": (nlu_pb2, {"Analyze"}),
        "Knowledge": (knowledge_pb2, {"Search", "Ingest", "Delete"}),
        "Generation": (generation_pb2, {"Generate", "GenerateStream"}),
        "Dialog": (dialog_pb2, {"Converse", "GetSession", "WatchReplies"}),
        "AgentDesk": (agent_pb2, {"ListQueue", "Claim", "Reply", "HandBack", "Resolve", "WatchSession"}),
    }
    for service, (module, expected) in methods.items():
        desc = module.DESCRIPTOR.services_by_name[service]
        assert {m.name for m in desc.methods} == expected
        assert desc.full_name == f"kefu.v1.{service}"
    stream = generation_pb2.DESCRIPTOR.services_by_name["Generation"].methods_by_name["GenerateStream"]
    assert stream.server_streaming
    assert dialog_pb2.DESCRIPTOR.services_by_name["Dialog"].methods_by_name["Converse"].server_streaming
    assert dialog_pb2.DESCRIPTOR.services_by_name["Dialog"].methods_by_name["WatchReplies"].server_streaming
    assert agent_pb2.DESCRIPTOR.services_by_name["AgentDesk"].methods_by_name["WatchSession"].server_streaming
