"""The GPU layout: TensorRT-LLM's inflight-batcher Triton repository for Qwen3.

``model_repository/trtllm/`` holds config templates with ``${name}`` placeholders
(``templates/<model>/config.pbtxt``), the Python-backend models
(``templates/<model>/1/model.py``) and ``profiles.yaml`` (Qwen3 sizes and
quantizations). This module renders a ready Triton repository for one
(size, quantization) and prints the engine build commands::

    kefu trtllm render --size qwen3-8b --quant fp8 --out /models/kefu-trtllm \\
        --engine-dir /engines/qwen3-8b-fp8 --tokenizer-dir /hf/Qwen3-8B
    kefu trtllm build-command --size qwen3-8b --quant fp8 \\
        --checkpoint-dir /hf/Qwen3-8B --engine-dir /engines/qwen3-8b-fp8

Nothing here needs a GPU or TensorRT-LLM; the rendered repository does.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.config import REPO_ROOT

TRTLLM_DIR = REPO_ROOT / "model_repository" / "trtllm"
TEMPLATES_DIR = TRTLLM_DIR / "templates"
PROFILES_FILE = TRTLLM_DIR / "profiles.yaml"
MODELS = ("preprocessing", "tensorrt_llm", "postprocessing", "ensemble", "tensorrt_llm_bls")
SERVING_KEYS = ("tp_size", "max_batch_size", "max_input_len", "max_output_len", "max_num_tokens")


class TrtllmError(ValueError):
    """A bad size, quantization, placeholder or override (the message says which)."""


class _Braced(string.Template):
    """Only ``${name}`` is a placeholder (and ``$$`` a dollar); a bare ``$`` is left alone."""

    pattern = r"\$(?:(?P<escaped>\$)|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)\}|(?P<named>(?!))|(?P<invalid>(?!)))"


@dataclass(frozen=True)
class Profile:
    size: str
    quant: str
    architecture: dict[str, Any]
    serving: dict[str, int]
    quantization: dict[str, Any]
    params: dict[str, str]  # template parameters, without engine_dir / tokenizer_dir


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def resolve(size: str, quant: str, profiles: dict[str, Any] | None = None) -> Profile:
    """The serving values and template parameters of one (size, quantization)."""
    profiles = profiles or load_profiles()
    sizes, quants = profiles["sizes"], profiles["quantizations"]
    if size not in sizes:
        raise TrtllmError(f"unknown size {size!r}; choose one of {', '.join(sizes)}")
    if quant not in quants:
        raise TrtllmError(f"unknown quantization {quant!r}; choose one of {', '.join(quants)}")
    q = quants[quant]
    serving = dict(sizes[size]["serving"])
    params = {k: _fmt(v) for k, v in profiles.get("params", {}).items()}
    params.update({k: _fmt(v) for k, v in q.get("params", {}).items()})
    for key, value in (q.get("per_size") or {}).get(size, {}).items():
        if key in SERVING_KEYS:
            serving[key] = value
        else:
            params[key] = _fmt(value)
    params.update(
        triton_max_batch_size=_fmt(serving["max_batch_size"]),
        max_input_len=_fmt(serving["max_input_len"]),
        max_output_len=_fmt(serving["max_output_len"]),
    )
    return Profile(size, quant, dict(sizes[size]["architecture"]), serving, dict(q), params)


def placeholders(text: str) -> list[str]:
    """The ``${name}`` placeholders in ``text``, in order of first appearance."""
    seen: dict[str, None] = {}
    for m in _Braced.pattern.finditer(text):
        if m.group("braced"):
            seen.setdefault(m.group("braced"))
    return list(seen)


def _check(params: dict[str, str]) -> None:
    for key in ("decoupled_mode", "accumulate_tokens", "enable_kv_cache_reuse", "enable_chunked_context", "exclude_input_in_output"):
        if key in params and params[key] not in ("true", "false"):
            raise TrtllmError(f"{key} must be true or false, got {params[key]!r}")
    json.loads(params.get("default_stop_words", "[]"))  # must be a JSON list


def render_repository(
    size: str,
    quant: str,
    out_dir: Path,
    *,
    engine_dir: str,
    tokenizer_dir: str,
    overrides: dict | None = None,
    templates_dir: Path = TEMPLATES_DIR,
) -> list[Path]:
    """Write a Triton repository for (size, quant) to ``out_dir``: ``<model>/config.pbtxt``
    and ``<model>/1/`` (with ``model.py`` for the Python models) for each model.

    ``overrides`` replaces template parameters (e.g. ``{"bls_instance_count": 2}``);
    an unknown key, a placeholder left without a value, or a bad value raises
    :class:`TrtllmError` naming it (and the template file). Returns the files written.
    """
    profile = resolve(size, quant)
    params = dict(profile.params, engine_dir=str(engine_dir), tokenizer_dir=str(tokenizer_dir))
    templates = {m: (templates_dir / m / "config.pbtxt") for m in MODELS}
    used = {name for path in templates.values() for name in placeholders(path.read_text(encoding="utf-8"))}
    unknown = sorted(set(overrides or {}) - used - set(params))
    if unknown:
        raise TrtllmError(f"unknown override(s) {', '.join(unknown)}; the templates use: {', '.join(sorted(used))}")
    params.update({k: _fmt(v) for k, v in (overrides or {}).items()})
    _check(params)

    rendered: dict[str, str] = {}
    for model, path in templates.items():
        text = path.read_text(encoding="utf-8")
        missing = [name for name in placeholders(text) if name not in params]
        if missing:
            raise TrtllmError(f"no value for placeholder(s) {', '.join('${' + n + '}' for n in missing)} in {path}")
        # Every placeholder sits in a pbtxt value: escape it as a pbtxt string body.
        out = _Braced(text).substitute({k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in params.items()})
        if "${" in out:
            raise TrtllmError(f"{path}: a placeholder is left after rendering: {out[out.index('${'):][:40]!r}")
        rendered[model] = out

    out_dir = Path(out_dir)
    written: list[Path] = []
    for model, text in rendered.items():
        target = out_dir / model
        (target / "1").mkdir(parents=True, exist_ok=True)
        config = target / "config.pbtxt"
        config.write_text(text, encoding="utf-8")
        written.append(config)
        source = templates_dir / model / "1" / "model.py"
        if source.is_file():
            shutil.copyfile(source, target / "1" / "model.py")
            written.append(target / "1" / "model.py")
    return written


def engine_build_command(
    size: str,
    quant: str,
    checkpoint_dir: str,
    engine_dir: str,
    *,
    tllm_checkpoint_dir: str | None = None,
    examples_dir: str = "examples",
) -> list[list[str]]:
    """The commands that build the TensorRT engine for (size, quant), in order.

    ``checkpoint_dir`` is the Hugging Face checkpoint (Qwen/Qwen3-*); the TensorRT-LLM
    checkpoint goes to ``tllm_checkpoint_dir`` (default ``<engine_dir>-ckpt``).
    ``examples_dir`` is TensorRT-LLM's ``examples/`` folder. bf16 converts with
    ``convert_checkpoint.py``; fp8 and int4_awq quantize with ModelOpt's
    ``quantize.py`` (calibration runs the model on the GPU). Tensor parallelism is
    fixed at this first step (``--tp_size``); ``trtllm-build`` reads it from the
    checkpoint and builds one engine per rank.
    """
    profile = resolve(size, quant)
    s, q = profile.serving, profile.quantization
    ckpt = tllm_checkpoint_dir or f"{str(engine_dir).rstrip('/')}-ckpt"
    tp = str(s["tp_size"])
    if q["checkpoint"] == "convert":
        first = [
            "python3", f"{examples_dir}/models/core/qwen/convert_checkpoint.py",
            "--model_dir", str(checkpoint_dir), "--output_dir", ckpt,
            "--dtype", q["dtype"], "--tp_size", tp,
        ]
    else:
        first = [
            "python3", f"{examples_dir}/quantization/quantize.py",
            "--model_dir", str(checkpoint_dir), "--output_dir", ckpt,
            "--dtype", q["dtype"], "--tp_size", tp,
        ]
        for key, value in q["quantize"].items():
            first += [f"--{key}", str(value)]
    build = [
        "trtllm-build", "--checkpoint_dir", ckpt, "--output_dir", str(engine_dir),
        "--max_batch_size", str(s["max_batch_size"]),
        "--max_input_len", str(s["max_input_len"]),
        "--max_seq_len", str(s["max_input_len"] + s["max_output_len"]),
        "--max_num_tokens", str(s["max_num_tokens"]),
        "--max_beam_width", profile.params.get("max_beam_width", "1"),
        "--kv_cache_type", "paged",
        "--remove_input_padding", "enable",
        "--context_fmha", "enable",
        "--use_paged_context_fmha", "enable",
        "--workers", tp,
    ]
    for key, value in q.get("build", {}).items():
        build += [f"--{key}", str(value)]
    return [first, build]


def memory_estimate(size: str, quant: str) -> dict[str, float]:
    """Rough GPU memory per GPU (GB): weights, and KV cache per token / per full sequence."""
    p = resolve(size, quant)
    a, s = p.architecture, p.serving
    embed = a["vocab_size"] * a["hidden_size"] * (1 if a["tie_word_embeddings"] else 2)
    body = a["parameters_billion"] * 1e9 - embed
    bytes_per_weight = {"bf16": 2.0, "fp8": 1.0, "int4_awq": 0.53}[quant]  # int4 + group-128 scales
    weights = (body * bytes_per_weight + embed * 2.0) / s["tp_size"]
    kv_bytes = 1 if p.quantization.get("quantize", {}).get("kv_cache_dtype") == "fp8" else 2
    per_token = 2 * a["num_hidden_layers"] * a["num_key_value_heads"] * a["head_dim"] * kv_bytes / s["tp_size"]
    seq = s["max_input_len"] + s["max_output_len"]
    return {
        "weights_gb": round(weights / 1e9, 1),
        "kv_per_token_kib": round(per_token / 1024, 1),
        "kv_per_sequence_gb": round(per_token * seq / 1e9, 2),
        "kv_full_batch_gb": round(per_token * seq * s["max_batch_size"] / 1e9, 1),
    }


# -- command line -------------------------------------------------------------------


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrtllmError(f"--set takes NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def _cmd_render(args: argparse.Namespace) -> int:
    try:
        files = render_repository(
            args.size, args.quant, Path(args.out), engine_dir=args.engine_dir, tokenizer_dir=args.tokenizer_dir,
            overrides=_parse_set(args.set or []),
        )
    except (TrtllmError, OSError) as exc:
        print(f"kefu trtllm render: {exc}", file=sys.stderr)
        return 1
    for path in files:
        print(path)
    mem = memory_estimate(args.size, args.quant)
    print(
        f"{args.size} {args.quant}: ~{mem['weights_gb']} GB weights per GPU, KV {mem['kv_per_token_kib']} KiB/token "
        f"(~{mem['kv_per_sequence_gb']} GB per full sequence). Serve with: tritonserver --model-repository={args.out} "
        "--model-control-mode=explicit --load-model=tensorrt_llm --load-model=tensorrt_llm_bls",
        file=sys.stderr,
    )
    return 0


def _cmd_build_command(args: argparse.Namespace) -> int:
    try:
        commands = engine_build_command(
            args.size, args.quant, args.checkpoint_dir, args.engine_dir,
            tllm_checkpoint_dir=args.tllm_checkpoint_dir, examples_dir=args.examples_dir,
        )
    except TrtllmError as exc:
        print(f"kefu trtllm build-command: {exc}", file=sys.stderr)
        return 1
    for cmd in commands:
        print(shlex.join(cmd))
    return 0


def add_trtllm_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``kefu trtllm {render,build-command}``; each sets ``args.func(args) -> int``."""
    profiles = load_profiles()
    sizes, quants = list(profiles["sizes"]), list(profiles["quantizations"])
    trtllm = subparsers.add_parser(
        "trtllm",
        help="GPU serving: render the TensorRT-LLM Triton repository, print engine build commands",
        description="Qwen3 on TensorRT-LLM behind Triton (model_repository/trtllm/, see its README.md).",
    )
    sub = trtllm.add_subparsers(dest="trtllm_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--size", required=True, choices=sizes, help="Qwen3 model size")
        p.add_argument("--quant", required=True, choices=quants, help="weight quantization (fp8 needs Hopper or newer)")

    render = sub.add_parser(
        "render", help="fill the templates for one size and quantization into a Triton model repository",
        description="Write OUT/{preprocessing,tensorrt_llm,postprocessing,ensemble,tensorrt_llm_bls}/ "
        "(config.pbtxt and 1/) from model_repository/trtllm/templates and profiles.yaml.",
    )
    common(render)
    render.add_argument("--out", required=True, help="the model repository folder to write (created if missing)")
    render.add_argument("--engine-dir", required=True, help="TensorRT engine folder (trtllm-build --output_dir), as Triton sees it")
    render.add_argument("--tokenizer-dir", required=True, help="Hugging Face tokenizer folder (the Qwen3 checkpoint), as Triton sees it")
    render.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help="override a template parameter, e.g. --set bls_instance_count=2 (repeatable)")
    render.set_defaults(func=_cmd_render)

    build = sub.add_parser(
        "build-command", help="print the checkpoint conversion/quantization and trtllm-build commands",
        description="Print, one per line, the commands that build the engine (run them in a TensorRT-LLM container "
        "from the TensorRT-LLM source folder).",
    )
    common(build)
    build.add_argument("--checkpoint-dir", required=True, help="Hugging Face checkpoint folder (e.g. a download of Qwen/Qwen3-8B)")
    build.add_argument("--engine-dir", required=True, help="where trtllm-build writes the engine")
    build.add_argument("--tllm-checkpoint-dir", default=None, help="intermediate TensorRT-LLM checkpoint (default ENGINE_DIR-ckpt)")
    build.add_argument("--examples-dir", default="examples", help="TensorRT-LLM's examples/ folder (default: examples)")
    build.set_defaults(func=_cmd_build_command)
    return trtllm


if __name__ == "__main__":  # python -m services.serving.trtllm {render,build-command} ...
    parser = argparse.ArgumentParser(prog="kefu")
    add_trtllm_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["trtllm", *sys.argv[1:]])
    sys.exit(ns.func(ns))
