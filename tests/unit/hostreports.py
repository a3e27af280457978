"""Host reports for the pure verdict: observations of hosts these machines cannot be.

These are inputs to a pure function, not fakes of a component: they describe an Intel
host with a patched kernel, an aarch64 host and so on, which the real probe cannot
produce here (tests/host runs the real probe on this machine).
"""

from __future__ import annotations

import dataclasses
import errno

from ncdma.kvm.probe import IoctlAnswer, KernelProbe
from ncdma.model.hostreport import CpuInfo
from ncdma.model.hostreport import HostReport

INTEL_EPT = CpuInfo("GenuineIntel", "Intel Xeon", vmx=True, ept=True, svm=False, self_snoop=True)
AMD = CpuInfo("AuthenticAMD", "AMD EPYC", vmx=False, ept=False, svm=True, self_snoop=False)


def kernel_probe(code: int = 0, quirks: int = 0x5FF, flag: int = 8) -> KernelProbe:
    """A probe in which both memslot ioctls answered ``code`` (0 = accepted)."""
    return KernelProbe("/dev/kvm", flag, 12,
                       (IoctlAnswer("KVM_SET_USER_MEMORY_REGION", True, code),
                        IoctlAnswer("KVM_SET_USER_MEMORY_REGION2", True, code)),
                       quirks, 0.5)


PATCHED_INTEL = HostReport(
    hostname="h", arch="x86_64", kernel="6.8.0-ncdma", cpu=INTEL_EPT,
    kvm_modules=("kvm", "kvm_intel"), device="/dev/kvm", probe=kernel_probe(0),
    probe_error="", seccomp_user_notif=True, qemu_version="10.0.0", libvirt_version="11.3.0")

UNPATCHED_AMD = dataclasses.replace(
    PATCHED_INTEL, kernel="6.18.0", cpu=AMD, kvm_modules=("kvm", "kvm_amd"),
    probe=kernel_probe(errno.EINVAL))


def variant(**changes: object) -> HostReport:
    """PATCHED_INTEL with some observations changed."""
    return dataclasses.replace(PATCHED_INTEL, **changes)  # type: ignore[arg-type]
