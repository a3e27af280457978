"""Constants and struct layouts of the KVM ioctl ABI (include/uapi/linux/kvm.h)."""

from __future__ import annotations

import ctypes

from ncdma.linux.ioctl import io, iow

KVMIO = 0xAE


class UserspaceMemoryRegion(ctypes.Structure):
    """``struct kvm_userspace_memory_region``: the argument of the v1 memslot ioctl."""

    _fields_ = [
        ("slot", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("guest_phys_addr", ctypes.c_uint64),
        ("memory_size", ctypes.c_uint64),
        ("userspace_addr", ctypes.c_uint64),
    ]


class UserspaceMemoryRegion2(ctypes.Structure):
    """``struct kvm_userspace_memory_region2`` (Linux 6.8+): the v1 fields plus guest_memfd."""

    _fields_ = UserspaceMemoryRegion._fields_ + [
        ("guest_memfd_offset", ctypes.c_uint64),
        ("guest_memfd", ctypes.c_uint32),
        ("pad1", ctypes.c_uint32),
        ("pad2", ctypes.c_uint64 * 14),
    ]


class EnableCap(ctypes.Structure):
    """``struct kvm_enable_cap``: the argument of KVM_ENABLE_CAP."""

    _fields_ = [
        ("cap", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("args", ctypes.c_uint64 * 4),
        ("pad", ctypes.c_uint8 * 64),
    ]


KVM_GET_API_VERSION = io(KVMIO, 0x00)
KVM_CREATE_VM = io(KVMIO, 0x01)
KVM_CHECK_EXTENSION = io(KVMIO, 0x03)
KVM_SET_USER_MEMORY_REGION = iow(KVMIO, 0x46, ctypes.sizeof(UserspaceMemoryRegion))
KVM_SET_USER_MEMORY_REGION2 = iow(KVMIO, 0x49, ctypes.sizeof(UserspaceMemoryRegion2))
KVM_ENABLE_CAP = iow(KVMIO, 0xA3, ctypes.sizeof(EnableCap))

# The ioctls the guard traps (seccomp) and answers.
MEMSLOT_IOCTLS = (KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2)

KVM_API_VERSION = 12

# Memslot flags defined upstream (bits 0..2 as of v6.19-rc1).
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1
KVM_MEM_GUEST_MEMFD = 1 << 2

KVM_CAP_DISABLE_QUIRKS2 = 213
KVM_CAP_USER_MEMORY2 = 231

# The whole-VM upstream alternative (Linux 6.16): disabling this quirk makes KVM on
# Intel honor guest PAT everywhere in the VM.
KVM_X86_QUIRK_IGNORE_GUEST_PAT = 1 << 9
