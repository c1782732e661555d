"""The intent classifier: its trained artifact and its Triton Python-backend model.

A version of ``model_repository/intent_classifier`` is a folder ``<n>/`` written by
:func:`services.nlu.training.publish_intent_version`. It holds

* ``model.py`` — a three-line shim importing :class:`TritonPythonModel` from here, so
  the code lives once in the kefu package and not in every version;
* ``weights.npz`` — a multinomial logistic regression on e5 "query: " embeddings plus
  the temperature that calibrates it, and the training examples' embeddings (for the
  nearest-example similarity that tells an off-topic message apart);
* ``labels.json`` — the intent name of each probability, in order;
* ``meta.json`` — training-data hash, date, hyper-parameters and held-out metrics.

Outputs per row: ``probabilities`` (calibrated, one per intent, sums to 1),
``labels`` (the intent names, repeated per row so that a reply carries the names of
the very version that computed it, even while a new version is being swapped in) and
``similarity`` (cosine to the closest training example).
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:  # only inside Triton's Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # the artifact code is used by the trainer and the tests too
    pb_utils = None

EMBEDDING_DIM = 384
ARTIFACT_FORMAT = 1
WEIGHTS_FILE = "weights.npz"
LABELS_FILE = "labels.json"
META_FILE = "meta.json"
MODEL_SHIM = (
    "# Version shim: the code is services/serving/intent_model.py; this folder holds the trained artifact.\n"
    "from services.serving.intent_model import TritonPythonModel  # noqa: F401\n"
    "__all__ = [\"TritonPythonModel\"]\n"
)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class IntentArtifact:
    """A trained intent classifier: ``softmax((((x - mean) / scale) @ W + b) / temperature)``."""

    labels: list[str]
    mean: np.ndarray  # [384]
    scale: float
    weights: np.ndarray  # [384, K]
    bias: np.ndarray  # [K]
    temperature: float
    examples: np.ndarray  # [n, 384] L2-normalised training embeddings
    meta: dict = field(default_factory=dict)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def predict(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities ``[n, K]``, nearest-example cosine ``[n]``) for ``[n, 384]`` embeddings."""
        x = np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        probs = softmax(self.logits(x) / self.temperature).astype(np.float32)
        similarity = (x @ self.examples.T).max(axis=1).astype(np.float32) if len(self.examples) else np.zeros(len(x), np.float32)
        return probs, similarity

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / WEIGHTS_FILE,
            mean=self.mean.astype(np.float32), scale=np.float32(self.scale), weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32), temperature=np.float32(self.temperature), examples=self.examples.astype(np.float32),
        )
        (folder / LABELS_FILE).write_text(json.dumps(self.labels, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (folder / META_FILE).write_text(json.dumps(self.meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        (folder / "model.py").write_text(MODEL_SHIM, encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "IntentArtifact":
        folder = Path(folder)
        labels = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        with np.load(folder / WEIGHTS_FILE) as w:
            artifact = cls(
                labels=list(labels), mean=w["mean"], scale=float(w["scale"]), weights=w["weights"], bias=w["bias"],
                temperature=float(w["temperature"]), examples=w["examples"], meta=meta,
            )
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{folder}: artifact format {meta.get('format')!r}, expected {ARTIFACT_FORMAT}")
        if artifact.weights.shape != (EMBEDDING_DIM, len(labels)) or artifact.bias.shape != (len(labels),):
            raise ValueError(f"{folder}: weights {artifact.weights.shape} do not match {len(labels)} labels")
        if not artifact.temperature > 0:
            raise ValueError(f"{folder}: temperature must be > 0, got {artifact.temperature}")
        return artifact


class TritonPythonModel:
    """``intent_classifier`` on Triton's Python backend; requests batched by Triton are
    classified in one matrix product."""

    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        self.artifact = IntentArtifact.load(folder)
        self.labels = np.array([name.encode("utf-8") for name in self.artifact.labels], dtype=np.object_)
        pb_utils.Logger.log_info(
            f"intent_classifier: version {args['model_version']} with {len(self.artifact.labels)} intents, "
            f"temperature {self.artifact.temperature:.3f}, trained {self.artifact.meta.get('trained_at', '?')}"
        )

    def execute(self, requests):
        rows: list[np.ndarray | None] = []
        responses: list = [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                x = pb_utils.get_input_tensor_by_name(request, "embedding").as_numpy()
                rows.append(np.asarray(x, dtype=np.float32).reshape(-1, EMBEDDING_DIM))
            except Exception as exc:
                rows.append(None)
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {exc}"))
        try:
            good = [r for r in rows if r is not None]
            if good:
                probs, sims = self.artifact.predict(np.concatenate(good, axis=0))
            start = 0
            for i, x in enumerate(rows):
                if x is None:
                    continue
                n = len(x)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("probabilities", probs[start:start + n]),
                    pb_utils.Tensor("labels", np.tile(self.labels, (n, 1))),
                    pb_utils.Tensor("similarity", sims[start:start + n].reshape(n, 1)),
                ])
                start += n
        except Exception as exc:
            pb_utils.Logger.log_error(f"intent_classifier: {exc}\n{traceback.format_exc()}")
            for i in range(len(requests)):
                if responses[i] is None:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"classification failed: {exc}"))
        return responses

    def finalize(self):
        self.artifact = None
