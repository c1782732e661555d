"""The store behind kefu: an imported one (``kefu store import``) or the demo store, in
``<KEFU_HOME>/erp.db`` or, when ``state.postgres_dsn`` is set, in PostgreSQL (shared by
every Dialog and worker process).

``open_store`` is asked again for every operation, not once at start, because
``kefu store import`` and ``kefu store reset`` replace or remove the store while kefu
runs: the next call must follow them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.erp.port import StorePort

if TYPE_CHECKING:
    from services.config import KefuConfig

__all__ = ["StorePort", "ensure_demo_store", "open_store", "reset_store", "store_location"]


def open_store_at(path) -> StorePort | None:  # noqa: ANN001 - str or PathLike
    """The store in the file at ``path`` by its recorded format, or None."""
    from services.erp.demo_store import DemoRetailStore
    from services.erp.tau_retail import TauRetailStore, store_format

    found = store_format(path)
    for kind in (TauRetailStore, DemoRetailStore):
        if found == kind.format:
            return kind(path)
    return None


def open_store(cfg: KefuConfig) -> StorePort | None:
    """The imported store at ``cfg.erp_path`` (in PostgreSQL when ``state.postgres_dsn``
    is set), or None when there is none (then the demo store is the store, and Dialog
    keeps its demo behaviour). Cheap: it opens no SQLite connection that outlives the
    call (PostgreSQL connections are kept, one per thread)."""
    from services.erp.demo_store import DemoRetailStore
    from services.erp.tau_retail import FORMAT, TauRetailStore, store_format

    dsn = cfg.state.postgres_dsn
    found = store_format(cfg.erp_path, dsn=dsn)
    if found == FORMAT:
        return TauRetailStore(cfg.erp_path, dsn=dsn)
    if found == DemoRetailStore.format:
        return DemoRetailStore(cfg.erp_path, dsn=dsn)
    return None


def store_location(cfg: KefuConfig) -> str:
    """Where the store is, for messages: the file, or PostgreSQL."""
    return "PostgreSQL (state.postgres_dsn)" if cfg.state.postgres_dsn else str(cfg.erp_path)


def reset_store(cfg: KefuConfig) -> None:
    """Back to the demo store: its documents rebuilt from the seeded demo ERP (seeding it
    first if needed) replace whatever store is there, atomically. The next turn sees it."""
    from services.demo.store import DemoStore
    from services.erp.demo_store import build_demo_store

    DemoStore.seed(cfg.store_path)
    build_demo_store(cfg.store_path, cfg.erp_path, dsn=cfg.state.postgres_dsn)


def ensure_demo_store(cfg: KefuConfig) -> bool:
    """Build the demo store when no store is there yet (``kefu up``, the chart's init
    containers); an imported store is kept across restarts. True when it was built.
    Whether one is there is decided under the store's lock, so processes starting
    together build it once."""
    from services.demo.store import DemoStore
    from services.erp.demo_store import build_demo_store
    from services.erp.tau_retail import store_format

    if store_format(cfg.erp_path, dsn=cfg.state.postgres_dsn) is not None:
        return False
    DemoStore.seed(cfg.store_path)
    return build_demo_store(cfg.store_path, cfg.erp_path, dsn=cfg.state.postgres_dsn, only_if_absent=True) is not None
