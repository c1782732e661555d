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

__all__ = ["StorePort", "open_store", "reset_store"]


def open_store(cfg: KefuConfig) -> StorePort | None:
    """The imported store at ``cfg.erp_path``, or None when there is none (then the
    demo store is the store, and Dialog keeps its demo behaviour). Cheap: it opens no
    connection that outlives the call."""
    from services.erp.tau_retail import FORMAT, TauRetailStore, store_format

    if store_format(cfg.erp_path) == FORMAT:
        return TauRetailStore(cfg.erp_path)
    return None


def reset_store(cfg: KefuConfig) -> None:
    """Remove the imported store, so that ``open_store`` returns None afterwards and the
    demo store is active again. Atomic (one unlink); doing it with no store is fine."""
    from services.erp.tau_retail import remove_store

    remove_store(cfg.erp_path)
