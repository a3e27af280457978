"""Adapter: the state directory (plans, journals, capture files, status gathered from them)."""
