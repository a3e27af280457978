"""What was observed on a host: its CPU, KVM and kernel probe (gathered by :mod:`ncdma.host`)."""

from __future__ import annotations

from dataclasses import dataclass

from ncdma.kvm.probe import KernelProbe

INTEL = "GenuineIntel"
AMD = "AuthenticAMD"


@dataclass(frozen=True)
class CpuInfo:
    """The first CPU's vendor and the features that matter to ncdma."""

    vendor: str
    model: str
    vmx: bool
    ept: bool
    svm: bool
    self_snoop: bool

    @property
    def is_intel(self) -> bool:
        """An Intel CPU: the only vendor on which the flag changes memory types."""
        return self.vendor == INTEL


@dataclass(frozen=True)
class HostReport:
    """What was observed on a host; ``probe`` is None when it could not run (``probe_error``)."""

    hostname: str
    arch: str
    kernel: str
    cpu: CpuInfo
    kvm_modules: tuple[str, ...]
    device: str
    probe: KernelProbe | None
    probe_error: str
    seccomp_user_notif: bool
    qemu_version: str | None
    libvirt_version: str | None
    lab_host: bool = False  # the lab's marker file is there (ncdma.standin)
