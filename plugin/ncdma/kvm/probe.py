"""The kernel probe: does this kernel accept KVM_MEM_NON_COHERENT_DMA on a memslot?

Support is decided by real ioctls, never by a KVM_CAP number: the series' capability
numbers collide with unrelated upstream capabilities (236 is KVM_CAP_PRE_FAULT_MEMORY
since 6.11; ChromeOS used 239, which upstream is KVM_CAP_ARM_WRITABLE_IMP_ID_REGS).
The probe creates a throwaway VM, proves that a plain slot is accepted (so an EINVAL
can only come from the flag), creates the same slot with the flag, and deletes it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import time
from dataclasses import dataclass

from ncdma.errors import KvmError
from ncdma.kvm import abi
from ncdma.kvm.device import DEFAULT_DEVICE, KvmDevice, VmFd
from ncdma.settings import DEFAULT_NON_COHERENT_DMA_FLAG

_PROBE_SLOT = 0
_PROBE_GPA = 0x100000


@dataclass(frozen=True)
class IoctlAnswer:
    """What one memslot ioctl said to a slot carrying the flag."""

    ioctl: str
    available: bool
    errno: int = 0

    @property
    def accepted(self) -> bool:
        """The kernel created the flagged slot."""
        return self.available and self.errno == 0

    @property
    def outcome(self) -> str:
        """'accepted', the errno's name (e.g. 'EINVAL') or 'not available'."""
        if not self.available:
            return "not available"
        if self.errno == 0:
            return "accepted"
        return errno.errorcode.get(self.errno, str(self.errno))


@dataclass(frozen=True)
class KernelProbe:
    """The kernel's answers about the flag and the related whole-VM quirk."""

    device: str
    flag: int
    api_version: int
    answers: tuple[IoctlAnswer, ...]
    quirks2_mask: int
    duration_ms: float

    @property
    def flag_supported(self) -> bool:
        """At least one memslot ioctl accepted the flag."""
        return any(answer.accepted for answer in self.answers)

    @property
    def flag_rejected(self) -> bool:
        """Every available ioctl rejected the flag with EINVAL (an unpatched kernel)."""
        tried = [answer for answer in self.answers if answer.available]
        return bool(tried) and all(answer.errno == errno.EINVAL for answer in tried)

    @property
    def ignore_guest_pat_quirk_disableable(self) -> bool:
        """KVM_X86_QUIRK_IGNORE_GUEST_PAT can be disabled (the whole-VM alternative)."""
        return bool(self.quirks2_mask & abi.KVM_X86_QUIRK_IGNORE_GUEST_PAT)


def _try_flag(vm: VmFd, flag: int, hva: int, size: int, v2: bool) -> int:
    """Create the probe slot with ``flag``; return the errno (0: created, then deleted)."""
    name = "KVM_SET_USER_MEMORY_REGION2" if v2 else "KVM_SET_USER_MEMORY_REGION"
    baseline = vm.set_user_memory_region(_PROBE_SLOT, 0, _PROBE_GPA, size, hva, v2)
    if baseline:
        raise KvmError(
            f"{name} rejected a plain slot ({errno.errorcode.get(baseline, baseline)}): "
            "the flag cannot be probed on this kernel",
            "report this host's kernel version to the ncdma developers", baseline)
    vm.set_user_memory_region(_PROBE_SLOT, 0, _PROBE_GPA, 0, hva, v2)
    answer = vm.set_user_memory_region(_PROBE_SLOT, flag, _PROBE_GPA, size, hva, v2)
    if answer == 0:
        vm.set_user_memory_region(_PROBE_SLOT, 0, _PROBE_GPA, 0, hva, v2)
    return answer


def probe_kernel(flag: int = DEFAULT_NON_COHERENT_DMA_FLAG,
                 device: str = DEFAULT_DEVICE) -> KernelProbe:
    """Ask the running kernel, with real ioctls, whether it accepts ``flag`` on a memslot.

    :raise KvmError: When the device cannot be opened or a VM cannot be created.
    """
    started = time.perf_counter()
    page = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        hva = ctypes.addressof(ctypes.c_char.from_buffer(page))
        with KvmDevice(device) as kvm, kvm.create_vm() as vm:
            api_version = kvm.api_version()
            answers = [IoctlAnswer("KVM_SET_USER_MEMORY_REGION", True,
                                   _try_flag(vm, flag, hva, mmap.PAGESIZE, v2=False))]
            has_v2 = vm.check_extension(abi.KVM_CAP_USER_MEMORY2) > 0
            answers.append(IoctlAnswer(
                "KVM_SET_USER_MEMORY_REGION2", has_v2,
                _try_flag(vm, flag, hva, mmap.PAGESIZE, v2=True) if has_v2 else 0))
            quirks = max(vm.check_extension(abi.KVM_CAP_DISABLE_QUIRKS2), 0)
    finally:
        page.close()
    return KernelProbe(device, flag, api_version, tuple(answers), quirks,
                       (time.perf_counter() - started) * 1000)
