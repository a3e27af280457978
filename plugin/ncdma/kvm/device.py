"""Thin wrappers around /dev/kvm and a VM file descriptor.

Each wrapper builds the kernel struct from typed arguments, makes one ioctl and
returns the result or the errno; bookkeeping lives with the callers.
"""

from __future__ import annotations

import errno
import fcntl
import os
from types import TracebackType

from ncdma.errors import KvmError
from ncdma.kvm import abi

DEFAULT_DEVICE = "/dev/kvm"


def _open_error(path: str, err: OSError) -> KvmError:
    """Turn a failed open of the KVM device into an operator-facing error."""
    if err.errno == errno.ENOENT:
        return KvmError(
            f"{path} does not exist: KVM is not available on this host",
            "load the KVM module (modprobe kvm_intel) or enable virtualization in the firmware",
            err.errno,
        )
    if err.errno in (errno.EACCES, errno.EPERM):
        return KvmError(
            f"permission denied opening {path}",
            "run as root, as ncdma's hook and guard do, or join the group that owns it",
            err.errno,
        )
    return KvmError(f"cannot open {path}: {err.strerror}", "check the KVM module", err.errno or errno.EIO)


class VmFd:
    """A KVM VM file descriptor (KVM_CREATE_VM), closed on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> VmFd:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the VM; the kernel destroys it with its last reference."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION on the VM (per-VM answers, e.g. quirk masks)."""
        return fcntl.ioctl(self.fd, abi.KVM_CHECK_EXTENSION, cap)

    def set_user_memory_region(self, slot: int, flags: int, gpa: int, size: int, hva: int,
                               v2: bool = False) -> int:
        """Create, change or (size 0) delete a memslot; return 0 or the errno."""
        if v2:
            region: abi.UserspaceMemoryRegion | abi.UserspaceMemoryRegion2 = \
                abi.UserspaceMemoryRegion2(slot, flags, gpa, size, hva)
            request = abi.KVM_SET_USER_MEMORY_REGION2
        else:
            region = abi.UserspaceMemoryRegion(slot, flags, gpa, size, hva)
            request = abi.KVM_SET_USER_MEMORY_REGION
        try:
            fcntl.ioctl(self.fd, request, bytes(region))
        except OSError as err:
            return err.errno or errno.EIO
        return 0


class KvmDevice:
    """The KVM system device, opened read-write and closed on exit."""

    def __init__(self, path: str = DEFAULT_DEVICE) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise _open_error(path, err) from err

    def __enter__(self) -> KvmDevice:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        os.close(self.fd)

    def api_version(self) -> int:
        """KVM_GET_API_VERSION (12 on every kernel since 2.6.22)."""
        return fcntl.ioctl(self.fd, abi.KVM_GET_API_VERSION, 0)

    def create_vm(self) -> VmFd:
        """KVM_CREATE_VM with the default machine type."""
        try:
            return VmFd(fcntl.ioctl(self.fd, abi.KVM_CREATE_VM, 0))
        except OSError as err:
            raise KvmError(f"KVM_CREATE_VM failed on {self.path}: {err.strerror}",
                           "check that no other hypervisor holds the CPU's virtualization "
                           "extensions", err.errno or errno.EIO) from err
