"""``kefu store import|export|reset|show``: which store kefu runs on.

The imported store is one SQLite file, ``<KEFU_HOME>/erp.db``, or, when
``state.postgres_dsn`` is set, tables in PostgreSQL. Import builds the new file beside
it and moves it into place (in PostgreSQL: replaces the documents in one transaction),
and reset replaces it with the demo store, each in one atomic step: both are safe while
kefu runs, whose next store call sees the change.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

from services.config import load_config

FORMATS = ("tau-retail",)


def add_store_commands(sub) -> None:
    store = sub.add_parser(
        "store",
        help="import, export or reset the store behind kefu (τ-bench retail data), or show which one is active",
        description=(
            "kefu answers order and account questions and runs cancellations, changes, returns and exchanges against "
            "one store. Without an imported store it is the built-in demo store. `kefu store import` makes an imported "
            "store the active one (<KEFU_HOME>/erp.db), `export` writes its current data back in the same format, "
            "`reset` goes back to the demo store (rebuilt from the demo ERP). All of them work while kefu runs."
        ),
    )
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="{import,export,reset,show}")

    imp = store_sub.add_parser(
        "import",
        help="load a store from a data folder and make it the active one",
        description=(
            "Read the store's data from DIR and make it the store kefu uses. For --format tau-retail, DIR holds "
            "τ-bench's users.json, orders.json and products.json. Every file is checked first; a bad one is named and "
            "nothing changes. A store imported before is replaced (its changes are lost: export them first)."
        ),
    )
    imp.add_argument("dir", metavar="DIR", help="folder with the data files")
    imp.add_argument("--format", default="tau-retail", help="data format (default and only one for now: tau-retail)")
    imp.add_argument(
        "--policy", help="the store's policy (Markdown) to ingest as its knowledge (default: wiki.md in or next to DIR, if there)"
    )
    imp.add_argument("--no-policy", action="store_true", help="import the data only; leave the knowledge as it is")
    imp.set_defaults(func=_cmd_import)

    exp = store_sub.add_parser(
        "export",
        help="write the active imported store's current data to a folder",
        description=(
            "Write the imported store's data, with every change kefu made (cancellations, new addresses, payment "
            "history, gift-card balances...), to DIR in the format it was imported from: for tau-retail, users.json, "
            "orders.json and products.json (existing files of those names are replaced)."
        ),
    )
    exp.add_argument("dir", metavar="DIR", help="folder to write to (created if missing)")
    exp.add_argument("--format", default="tau-retail", help="data format (default and only one for now: tau-retail)")
    exp.set_defaults(func=_cmd_export)

    reset = store_sub.add_parser(
        "reset",
        help="go back to the demo store (the imported one is replaced)",
        description=(
            "Replace the store (<KEFU_HOME>/erp.db) with the demo store, rebuilt from the seeded demo ERP; an imported "
            "store and every change made to it are gone. Export it first to keep them."
        ),
    )
    reset.set_defaults(func=_cmd_reset)

    show = store_sub.add_parser("show", help="say which store is active, with its counts", description="Say which store is active.")
    show.set_defaults(func=_cmd_show)


def _name(cfg) -> str:  # noqa: ANN001 - KefuConfig
    """The store's file (relative when under the working directory), or PostgreSQL."""
    return "PostgreSQL" if cfg.state.postgres_dsn else _display(cfg.erp_path)


def _at(cfg) -> str:  # noqa: ANN001 - KefuConfig
    """Where the store is, for messages: "at <file>" (relative when under the working
    directory), or "in PostgreSQL" when ``state.postgres_dsn`` is set."""
    return "in PostgreSQL (state.postgres_dsn)" if cfg.state.postgres_dsn else f"at {_display(cfg.erp_path)}"


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (shorter to read)."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def _fail(command: str, message: str) -> int:
    print(f"kefu store {command}: {message}", file=sys.stderr)
    return 1


def _check_format(command: str, fmt: str) -> int | None:
    if fmt not in FORMATS:
        return _fail(command, f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    return None


def _message(exc: BaseException) -> str:
    """One line for the terminal: an OSError by the file it concerns."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def _errors() -> tuple[type[BaseException], ...]:
    import yaml

    errors: tuple[type[BaseException], ...] = (ValueError, OSError, sqlite3.Error, RuntimeError, yaml.YAMLError)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return errors
    return (*errors, psycopg.Error)


def _cmd_import(args: argparse.Namespace) -> int:
    from services.erp.tau_retail import import_tau_retail

    failed = _check_format("import", args.format)
    if failed is not None:
        return failed
    try:
        cfg = load_config(args.config)
        counts = import_tau_retail(Path(args.dir), cfg.erp_path, dsn=cfg.state.postgres_dsn)
    except _errors() as exc:
        return _fail("import", f"{_message(exc)}; the store was not changed")
    print(
        f"store: imported {counts['customers']} customers, {counts['orders']} orders, {counts['products']} products "
        f"from {args.dir} into {_name(cfg)} ({args.format})"
    )
    if not args.no_policy:
        from services.erp.pack_knowledge import find_policy, ingest_policy

        policy = Path(args.policy) if args.policy else find_policy(Path(args.dir))
        if policy is None:
            print("knowledge: no policy next to the data (wiki.md); the store's questions go to the current knowledge", file=sys.stderr)
        else:
            try:
                print(ingest_policy(cfg, policy, args.format))
            except Exception as exc:  # noqa: BLE001 - the store is imported; say what went wrong with the policy
                return _fail("import", f"the store was imported, but its policy {policy} was not ingested: {_message(exc)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from services.erp.tau_retail import FORMAT, export_tau_retail, store_format

    failed = _check_format("export", args.format)
    if failed is not None:
        return failed
    try:
        cfg = load_config(args.config)
        active = store_format(cfg.erp_path, dsn=cfg.state.postgres_dsn)
        if active is None:
            return _fail("export", f"no imported store {_at(cfg)} (the demo store is active); nothing to export")
        if active != FORMAT:
            return _fail("export", f"the store {_at(cfg)} is {active!r}, not {args.format!r}")
        counts = export_tau_retail(cfg.erp_path, Path(args.dir), dsn=cfg.state.postgres_dsn)
    except _errors() as exc:
        return _fail("export", _message(exc))
    print(
        f"store: exported {counts['customers']} customers, {counts['orders']} orders, {counts['products']} products "
        f"from {_name(cfg)} to {args.dir} ({args.format})"
    )
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from services.erp import reset_store
    from services.erp.tau_retail import store_format

    try:
        cfg = load_config(args.config)
        fmt = store_format(cfg.erp_path, dsn=cfg.state.postgres_dsn)
        had = fmt is not None if cfg.state.postgres_dsn else cfg.erp_path.exists()
        reset_store(cfg)
        from services.erp.pack_knowledge import remove_policy

        removed = remove_policy(cfg)
    except _errors() as exc:
        return _fail("reset", _message(exc))
    if removed:
        print(removed)
    replaced = f", replacing the {fmt} store" if had and fmt else ""
    print(f"store: the demo store is active {_at(cfg)} (built from {_display(cfg.store_path)}{replaced})")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from services.erp import open_store
    from services.erp.tau_retail import TauRetailStore

    try:
        cfg = load_config(args.config)
        store = open_store(cfg)
        if store is None:
            print(f"store: no store {_at(cfg)} yet (`kefu up` or `kefu store reset` builds the demo store)")
            return 0
        if isinstance(store, TauRetailStore):
            counts, meta = store.counts(), store.meta()
            print(
                f"store: {store.format} {_at(cfg)}: {counts['customers']} customers, {counts['orders']} orders, "
                f"{counts['products']} products, {counts['applied_operations']} recorded operations; "
                f"imported {meta.get('imported_at', '?')} from {meta.get('source', '?')}"
            )
        else:
            print(f"store: {store.format} {_at(cfg)}")
    except _errors() as exc:
        return _fail("show", _message(exc))
    return 0
