"""Core: KVM's userspace ABI as ncdma needs it: structs, ioctl numbers, memslots read from
QEMU's memory, and the flag probe.

This package knows ioctls and structs only; it makes no decisions about hosts or
domains (see :mod:`ncdma.host` for that).
"""
