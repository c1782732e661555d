"""The TensorRT-LLM GPU layout (model_repository/trtllm), checked without a GPU:
every size x quantization renders to configs that Triton's own protobuf accepts, the
ensemble is wired to tensors that exist, the BLS model keeps kefu's `llm` contract
and streams Chinese without half characters (against a stand-in pb_utils), and the
engine build commands differ per quantization as they must."""

from __future__ import annotations

import importlib.util
import itertools
import py_compile
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from services.config import REPO_ROOT
from services.serving.trtllm import (
    MODELS,
    TEMPLATES_DIR,
    TrtllmError,
    add_trtllm_commands,
    engine_build_command,
    load_profiles,
    memory_estimate,
    render_repository,
)

PROFILES = load_profiles()
SIZES = list(PROFILES["sizes"])
QUANTS = list(PROFILES["quantizations"])
COMBOS = list(itertools.product(SIZES, QUANTS))


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[tuple[str, str], dict[str, model_config_pb2.ModelConfig]]:
    out = {}
    for size, quant in COMBOS:
        root = tmp_path_factory.mktemp(f"{size}-{quant}")
        files = render_repository(size, quant, root, engine_dir=f"/engines/{size}-{quant}", tokenizer_dir=f"/hf/{size}")
        assert all(f.is_file() for f in files)
        for model in MODELS:
            text = (root / model / "config.pbtxt").read_text(encoding="utf-8")
            assert "${" not in text, f"{model}: placeholder left"
            assert (root / model / "1").is_dir()
        out[(size, quant)] = {m: parse(root / m / "config.pbtxt") for m in MODELS}
    return out


def test_sizes_and_quantizations_are_the_documented_ones():
    assert SIZES == ["qwen3-4b", "qwen3-8b", "qwen3-14b"]
    assert QUANTS == ["bf16", "fp8", "int4_awq"]
    a = {s: PROFILES["sizes"][s]["architecture"] for s in SIZES}
    assert (a["qwen3-4b"]["hidden_size"], a["qwen3-8b"]["hidden_size"], a["qwen3-14b"]["hidden_size"]) == (2560, 4096, 5120)
    assert (a["qwen3-4b"]["num_hidden_layers"], a["qwen3-14b"]["num_hidden_layers"]) == (36, 40)
    assert all(x["num_key_value_heads"] == 8 and x["head_dim"] == 128 and x["vocab_size"] == 151936 for x in a.values())


@pytest.mark.parametrize("size,quant", COMBOS)
def test_models_backends_and_streaming(rendered, size, quant):
    cfg = rendered[(size, quant)]
    assert {m: cfg[m].name for m in MODELS} == {m: m for m in MODELS}
    assert cfg["tensorrt_llm"].backend == "tensorrtllm"
    for m in ("preprocessing", "postprocessing", "tensorrt_llm_bls"):
        assert cfg[m].backend == "python"
    assert cfg["ensemble"].platform == "ensemble" and not cfg["ensemble"].backend
    # Streaming: the engine and the BLS model are decoupled.
    assert cfg["tensorrt_llm"].model_transaction_policy.decoupled
    assert cfg["tensorrt_llm_bls"].model_transaction_policy.decoupled
    params = {k: v.string_value for k, v in cfg["tensorrt_llm"].parameters.items()}
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["gpt_model_path"] == f"/engines/{size}-{quant}"
    assert params["enable_chunked_context"] == "true" and params["exclude_input_in_output"] == "true"
    assert 0.5 < float(params["kv_cache_free_gpu_mem_fraction"]) < 1.0
    bls = {k: v.string_value for k, v in cfg["tensorrt_llm_bls"].parameters.items()}
    assert bls["accumulate_tokens"] == "true" and bls["tokenizer_dir"] == f"/hf/{size}"
    assert bls["tensorrt_llm_model_name"] == "tensorrt_llm"
    serving = PROFILES["sizes"][size]["serving"] | (PROFILES["quantizations"][quant].get("per_size") or {}).get(size, {})
    for m in ("preprocessing", "tensorrt_llm", "postprocessing", "ensemble"):
        assert cfg[m].max_batch_size == serving["max_batch_size"]


def _tensors(cfg: model_config_pb2.ModelConfig, kind: str) -> dict[str, model_config_pb2.ModelInput]:
    return {t.name: t for t in getattr(cfg, kind)}


@pytest.mark.parametrize("size,quant", COMBOS[:1] + COMBOS[-1:])
def test_ensemble_steps_reference_existing_models_and_tensors(rendered, size, quant):
    cfg = rendered[(size, quant)]
    ens = cfg["ensemble"]
    available = {name: t.data_type for name, t in _tensors(ens, "input").items()}  # tensors so far
    produced: set[str] = set()
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["preprocessing", "tensorrt_llm", "postprocessing"]
    for step in ens.ensemble_scheduling.step:
        assert step.model_name in cfg, step.model_name
        model = cfg[step.model_name]
        inputs, outputs = _tensors(model, "input"), _tensors(model, "output")
        for key, value in step.input_map.items():
            assert key in inputs, f"{step.model_name} has no input {key}"
            assert value in available, f"{step.model_name}.{key} <- {value}: no such tensor yet"
            assert inputs[key].data_type == available[value], f"{step.model_name}.{key}: type differs from {value}"
        required = {n for n, t in inputs.items() if not t.optional}
        assert required <= set(step.input_map), f"{step.model_name}: required inputs not fed: {required - set(step.input_map)}"
        for key, value in step.output_map.items():
            assert key in outputs, f"{step.model_name} has no output {key}"
            available[value] = outputs[key].data_type
            produced.add(value)
    for name, t in _tensors(ens, "output").items():
        assert name in produced and available[name] == t.data_type


def test_bls_keeps_the_llm_model_contract(rendered):
    """kefu's Generation can point at tensorrt_llm_bls instead of llm unchanged."""
    llm = parse(REPO_ROOT / "model_repository" / "llm" / "config.pbtxt")
    bls = rendered[COMBOS[0]]["tensorrt_llm_bls"]
    assert bls.max_batch_size == llm.max_batch_size == 0
    for kind in ("input", "output"):
        mine = _tensors(bls, kind)
        for name, t in _tensors(llm, kind).items():
            assert name in mine, f"tensorrt_llm_bls lacks {kind} {name}"
            assert (mine[name].data_type, list(mine[name].dims)) == (t.data_type, list(t.dims)), name
    assert "stream" in _tensors(bls, "input")


def test_tensor_parallel_and_memory_fit():
    for size, quant in COMBOS:
        mem = memory_estimate(size, quant)
        # weights + a full batch of full-length sequences fit an 80 GB GPU's KV share
        assert mem["weights_gb"] + mem["kv_full_batch_gb"] < 80 * 0.9, (size, quant, mem)
    assert memory_estimate("qwen3-8b", "fp8")["kv_per_token_kib"] == memory_estimate("qwen3-8b", "bf16")["kv_per_token_kib"] / 2


def test_unknown_size_or_quantization_is_a_clear_error(tmp_path):
    with pytest.raises(TrtllmError, match=r"unknown size 'qwen3-70b'.*qwen3-4b, qwen3-8b, qwen3-14b"):
        render_repository("qwen3-70b", "bf16", tmp_path, engine_dir="/e", tokenizer_dir="/t")
    with pytest.raises(TrtllmError, match=r"unknown quantization 'int8'.*bf16, fp8, int4_awq"):
        render_repository("qwen3-8b", "int8", tmp_path, engine_dir="/e", tokenizer_dir="/t")
    with pytest.raises(TrtllmError, match="unknown size"):
        engine_build_command("qwen3-1b", "bf16", "/hf", "/e")
    with pytest.raises(TrtllmError, match="unknown override.*bls_instanse_count"):
        render_repository("qwen3-8b", "bf16", tmp_path, engine_dir="/e", tokenizer_dir="/t", overrides={"bls_instanse_count": 2})
    with pytest.raises(TrtllmError, match="decoupled_mode must be true or false"):
        render_repository("qwen3-8b", "bf16", tmp_path, engine_dir="/e", tokenizer_dir="/t", overrides={"decoupled_mode": "yes"})


def test_missing_placeholder_value_names_it_and_the_file(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = templates / "postprocessing" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + 'parameters { key: "x" value: { string_value: "${not_in_any_profile}" } }\n')
    with pytest.raises(TrtllmError) as err:
        render_repository("qwen3-4b", "fp8", tmp_path / "out", engine_dir="/e", tokenizer_dir="/t", templates_dir=templates)
    assert "${not_in_any_profile}" in str(err.value) and str(cfg) in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_overrides_reach_the_configs(tmp_path):
    render_repository("qwen3-4b", "bf16", tmp_path, engine_dir="/e", tokenizer_dir="/t",
                      overrides={"bls_instance_count": 3, "kv_cache_free_gpu_mem_fraction": 0.5})
    assert parse(tmp_path / "tensorrt_llm_bls" / "config.pbtxt").instance_group[0].count == 3
    params = parse(tmp_path / "tensorrt_llm" / "config.pbtxt").parameters
    assert params["kv_cache_free_gpu_mem_fraction"].string_value == "0.5"


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


@pytest.mark.parametrize("size", SIZES)
def test_engine_build_command_per_quantization(size):
    cmds = {q: engine_build_command(size, q, f"/hf/{size}", f"/engines/{size}-{q}") for q in QUANTS}
    for quant, (first, build) in cmds.items():
        assert first[0] == "python3" and build[0] == "trtllm-build"
        assert _flag(first, "--model_dir") == f"/hf/{size}"
        assert _flag(first, "--output_dir") == _flag(build, "--checkpoint_dir")
        assert _flag(build, "--output_dir") == f"/engines/{size}-{quant}"
        assert _flag(first, "--tp_size") == _flag(build, "--workers")
        assert _flag(build, "--use_paged_context_fmha") == "enable"
        assert "--gemm_plugin" in build
        serving = PROFILES["sizes"][size]["serving"] | (PROFILES["quantizations"][quant].get("per_size") or {}).get(size, {})
        assert int(_flag(build, "--max_batch_size")) == serving["max_batch_size"]
        assert int(_flag(build, "--max_input_len")) == serving["max_input_len"]
        assert int(_flag(build, "--max_seq_len")) == serving["max_input_len"] + serving["max_output_len"]
    bf16, fp8, awq = cmds["bf16"][0], cmds["fp8"][0], cmds["int4_awq"][0]
    assert bf16[1].endswith("models/core/qwen/convert_checkpoint.py") and "--qformat" not in bf16
    assert _flag(bf16, "--dtype") == "bfloat16"
    assert fp8[1].endswith("quantization/quantize.py") and _flag(fp8, "--qformat") == "fp8"
    assert _flag(fp8, "--kv_cache_dtype") == "fp8" and "--calib_size" in fp8
    assert awq[1].endswith("quantization/quantize.py") and _flag(awq, "--qformat") == "int4_awq"
    assert _flag(awq, "--awq_block_size") == "128"
    assert _flag(cmds["fp8"][1], "--use_fp8_context_fmha") == "enable"
    assert "--use_fp8_context_fmha" not in cmds["bf16"][1] + cmds["int4_awq"][1]


def test_command_line(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="kefu")
    add_trtllm_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["trtllm", "render", "--size", "qwen3-4b", "--quant", "int4_awq", "--out", str(tmp_path),
                              "--engine-dir", "/e", "--tokenizer-dir", "/t", "--set", "bls_instance_count=2"])
    assert args.func(args) == 0
    assert parse(tmp_path / "tensorrt_llm_bls" / "config.pbtxt").instance_group[0].count == 2
    args = parser.parse_args(["trtllm", "build-command", "--size", "qwen3-8b", "--quant", "fp8",
                              "--checkpoint-dir", "/hf/Qwen3-8B", "--engine-dir", "/engines/q8"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("python3 examples/quantization/quantize.py") and lines[-1].startswith("trtllm-build ")
    with pytest.raises(SystemExit):
        parser.parse_args(["trtllm", "render", "--size", "qwen3-70b", "--quant", "fp8", "--out", "x",
                           "--engine-dir", "e", "--tokenizer-dir", "t"])


@pytest.mark.parametrize("path", sorted(TEMPLATES_DIR.glob("*/1/model.py")), ids=lambda p: p.parent.parent.name)
def test_model_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "model.pyc"), doraise=True)


# -- the BLS model against a stand-in triton_python_backend_utils ---------------------


class ByteTokenizer:
    """Byte-level like Qwen's BPE: a Han character is three tokens. Specials: 300
    <|endoftext|> (pad), 301 <|im_end|> (eos), 302 <|im_start|>."""

    SPECIAL = {"<|endoftext|>": 300, "<|im_end|>": 301, "<|im_start|>": 302}
    eos_token_id, pad_token_id, all_special_ids = 301, 300, [300, 301, 302]

    def encode(self, text, add_special_tokens=False):
        return [self.SPECIAL[text]] if text in self.SPECIAL else list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class _Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class _Error:
    def __init__(self, msg):
        self._msg = msg

    def message(self):
        return self._msg


class _Response:
    def __init__(self, output_tensors=(), error=None):
        self.outputs, self._error = {t.name(): t for t in output_tensors}, error

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


class _Stream(list):
    cancelled = False

    def cancel(self):
        self.cancelled = True


class _Engine:
    """Streams the reply one token per response, then an empty final response."""

    def __init__(self, reply_ids):
        self.reply_ids, self.requests, self.stream = reply_ids, [], None

    def __call__(self, request, decoupled):
        self.requests.append(request)
        out = [_Response([_Tensor("output_ids", [[[t]]]), _Tensor("sequence_length", [[1]])]) for t in self.reply_ids]
        self.stream = _Stream(out + [_Response()])
        return self.stream


def _fake_pb_utils(engine: _Engine) -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")

    class InferenceRequest:
        def __init__(self, model_name, requested_output_names, inputs):
            self.model_name, self.inputs = model_name, {t.name(): t.as_numpy() for t in inputs}

        def exec(self, decoupled=False):
            return engine(self, decoupled)

    pb.Tensor, pb.InferenceResponse, pb.TritonError, pb.InferenceRequest = _Tensor, _Response, _Error, InferenceRequest
    pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL_FLAG = 1
    pb.get_input_tensor_by_name = lambda req, name: req.tensors.get(name)
    pb.get_output_tensor_by_name = lambda resp, name: resp.outputs.get(name)
    pb.using_decoupled_model_transaction_policy = lambda config: config["model_transaction_policy"]["decoupled"]
    pb.Logger = types.SimpleNamespace(log_error=print, log_info=print, log_warn=print)
    return pb


class _Sender:
    def __init__(self):
        self.sent = []

    def send(self, response=None, flags=0):
        self.sent.append((response, flags))

    def is_cancelled(self):
        return False

    def deltas(self):
        return [r.outputs["text_output"].as_numpy()[0].decode("utf-8") for r, _ in self.sent if r is not None and not r.has_error()]

    def final(self):
        response, flags = self.sent[-1]
        assert flags == 1
        return response.outputs["finish_reason"].as_numpy()[0].decode(), int(response.outputs["completion_tokens"].as_numpy()[0])


class _Request:
    def __init__(self, **inputs):
        self.tensors = {k: _Tensor(k, v) for k, v in inputs.items()}
        self.sender = _Sender()

    def get_response_sender(self):
        return self.sender


REPLY = "您好！退货请在7天内申请。谢谢"


def _bls(monkeypatch, reply: str, accumulate: bool = True):
    engine = _Engine(list(reply.encode("utf-8")) + [ByteTokenizer.eos_token_id])
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils(engine))
    spec = importlib.util.spec_from_file_location("kefu_bls_under_test", TEMPLATES_DIR / "tensorrt_llm_bls" / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "AutoTokenizer", types.SimpleNamespace(from_pretrained=lambda *a, **k: ByteTokenizer()))
    params = {"tokenizer_dir": "/t", "accumulate_tokens": "true" if accumulate else "false", "default_max_tokens": "160",
              "max_tokens_limit": "512", "max_input_len": "3584", "max_concurrent_requests": "4",
              "default_stop_words": '["<|endoftext|>", "<|im_start|>"]'}
    config = {"model_transaction_policy": {"decoupled": True}, "parameters": {k: {"string_value": v} for k, v in params.items()}}
    model = module.TritonPythonModel()
    model.initialize({"model_config": __import__("json").dumps(config)})
    return model, engine


def _ask(model, **extra) -> _Request:
    request = _Request(text_input=np.array([b"<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n"], dtype=np.object_),
                       max_tokens=np.array([extra.pop("max_tokens", 100)], dtype=np.int32), **extra)
    assert model.execute([request]) is None
    model.finalize()  # waits for the worker thread
    return request


def test_bls_streams_chinese_without_half_characters(monkeypatch):
    model, engine = _bls(monkeypatch, REPLY)
    request = _ask(model)
    deltas = request.sender.deltas()
    assert "".join(deltas) == REPLY
    assert all("\ufffd" not in d for d in deltas)
    assert len([d for d in deltas if d]) > 5  # it streamed, not one blob
    assert request.sender.final() == ("stop", len(REPLY.encode("utf-8")))
    sent = engine.requests[0].inputs
    assert sent["input_ids"].shape[0] == 1 and sent["input_lengths"].tolist() == [[sent["input_ids"].shape[1]]]
    assert sent["streaming"].tolist() == [[True]] and sent["exclude_input_in_output"].tolist() == [[True]]
    assert sent["end_id"].tolist() == [[301]] and sent["pad_id"].tolist() == [[300]]
    assert sent["runtime_top_k"].tolist() == [[1]]  # temperature 0: greedy
    assert sent["stop_words_list"].tolist() == [[[300, 302], [1, 2]]]


def test_bls_without_accumulation_garbles_chinese(monkeypatch):
    """Why accumulate_tokens is on: decoding each streamed token alone breaks characters."""
    model, _ = _bls(monkeypatch, REPLY, accumulate=False)
    assert "\ufffd" in "".join(_ask(model).sender.deltas())


def test_bls_stop_string_and_length(monkeypatch):
    model, engine = _bls(monkeypatch, REPLY)
    request = _ask(model, stop=np.array(["。".encode()], dtype=np.object_))
    assert "".join(request.sender.deltas()) == "您好！退货请在7天内申请"
    assert request.sender.final()[0] == "stop"
    assert engine.stream.cancelled  # the engine request is stopped, not left running

    model, _ = _bls(monkeypatch, REPLY)
    request = _ask(model, max_tokens=len(REPLY.encode("utf-8")))
    assert request.sender.final()[0] == "length"


def test_bls_rejects_bad_requests(monkeypatch):
    model, engine = _bls(monkeypatch, REPLY)
    request = _ask(model, max_tokens=10_000)
    (response, flags), = request.sender.sent
    assert response.has_error() and "max_tokens" in response.error().message() and flags == 1
    assert engine.requests == []
