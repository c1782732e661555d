"""Generate the Python stubs of the kefu.v1 contracts, next to the .proto files.

    python scripts/gen_protos.py          # regenerate protos/kefu/v1/*_pb2*.py(i)
    python scripts/gen_protos.py --check  # exit 1 if the committed stubs are stale

Stubs land in protos/kefu/v1/, importable as ``kefu.v1`` (pyproject maps the
``kefu`` package to protos/kefu). The output depends on the pinned grpcio-tools.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = PROTO_ROOT / "kefu" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc over every .proto; return the generated files (relative to out_root)."""
    protos = sorted(PACKAGE_DIR.glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out_root) for p in out_root.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def committed_stubs() -> list[Path]:
    return sorted(
        p.relative_to(PROTO_ROOT) for p in PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )


def stale_stubs() -> list[str]:
    """Names of stubs that differ from what the .proto files generate now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        problems = [f"missing: {p}" for p in fresh if not (PROTO_ROOT / p).exists()]
        problems += [f"stale: {p}" for p in fresh if (PROTO_ROOT / p).exists() and not filecmp.cmp(Path(tmp) / p, PROTO_ROOT / p, shallow=False)]
        problems += [f"orphan: {p}" for p in committed_stubs() if p not in fresh]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale stubs; exit 1 if any")
    args = parser.parse_args()
    if args.check:
        problems = stale_stubs()
        for p in problems:
            print(p)
        return 1 if problems else 0
    for p in committed_stubs():
        (PROTO_ROOT / p).unlink()
    with tempfile.TemporaryDirectory() as tmp:
        for p in generate(Path(tmp)):
            shutil.copyfile(Path(tmp) / p, PROTO_ROOT / p)
            print(f"wrote protos/{p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
