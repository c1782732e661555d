"""Temporal workflows and activities of kefu (tickets; returns, handoff and retraining come later)."""
