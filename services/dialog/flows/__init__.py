"""Task flows: multi-turn dialog that completes customer tasks against the ERP port."""
