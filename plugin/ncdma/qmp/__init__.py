"""Adapter: QEMU's QMP, to learn a running QEMU's memory layout."""
