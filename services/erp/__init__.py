"""The store behind kefu: an imported one (``kefu store import``) or the demo store.

``open_store`` is asked again for every operation, not once at start, because
``kefu store import`` and ``kefu store reset`` replace or remove the store file while
kefu runs: the next call must follow them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.erp.port import StorePort

if TYPE_CHECKING:
    from services.config import KefuConfig

__all__ = ["StorePort", "ensure_demo_store", "open_store", "reset_store"]


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
    """The imported store at ``cfg.erp_path``, or None when there is none (then the
    demo store is the store, and Dialog keeps its demo behaviour). Cheap: it opens no
    connection that outlives the call."""
    from services.erp.demo_store import DemoRetailStore
    from services.erp.tau_retail import FORMAT, TauRetailStore, store_format

    found = store_format(cfg.erp_path)
    if found == FORMAT:
        return TauRetailStore(cfg.erp_path)
    if found == DemoRetailStore.format:
        return DemoRetailStore(cfg.erp_path)
    return None


def reset_store(cfg: KefuConfig) -> None:
    """Back to the demo store: its documents rebuilt from the seeded demo ERP (seeding it
    first if needed) replace whatever store is there, atomically. The next turn sees it."""
    from services.demo.store import DemoStore
    from services.erp.demo_store import build_demo_store

    DemoStore.seed(cfg.store_path)
    build_demo_store(cfg.store_path, cfg.erp_path)


def ensure_demo_store(cfg: KefuConfig) -> bool:
    """Build the demo store when no store is there yet (``kefu up``); an imported store
    is kept across restarts. True when it was built."""
    from services.erp.tau_retail import store_format

    if store_format(cfg.erp_path) is not None:
        return False
    reset_store(cfg)
    return True
