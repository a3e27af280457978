"""The host report: everything ncdma needs to know about a host to choose a mode.

Gathering (I/O) lives here; the decision is the pure function in :mod:`ncdma.model.verdict`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ncdma.errors import KvmError
from ncdma.host.cpu import loaded_kvm_modules, read_cpu
from ncdma.kvm.device import DEFAULT_DEVICE
from ncdma.kvm.probe import KernelProbe, probe_kernel
from ncdma.model.hostreport import HostReport
from ncdma.standin import is_lab_host

SECCOMP_ACTIONS = Path("/proc/sys/kernel/seccomp/actions_avail")


def seccomp_user_notif_available(actions: Path = SECCOMP_ACTIONS) -> bool:
    """The kernel offers SECCOMP_RET_USER_NOTIF, which the guard needs to trap ioctls."""
    try:
        return "user_notif" in actions.read_text().split()
    except OSError:
        return False


def gather_host_report(flag: int, device: str = DEFAULT_DEVICE,
                       versions: tuple[str | None, str | None] = ("", "")) -> HostReport:
    """Observe this host: CPU, KVM modules and the kernel probe for ``flag``.

    ``versions`` are QEMU's and libvirt's, asked by the caller
    (:func:`ncdma.host.versions.qemu_and_libvirt_versions`); the hook leaves them empty, as it
    must run no child processes.
    """
    probe: KernelProbe | None = None
    probe_error = ""
    try:
        probe = probe_kernel(flag, device)
    except KvmError as err:
        probe_error = str(err)
    qemu, libvirt = versions
    uname = os.uname()
    return HostReport(
        hostname=uname.nodename,
        arch=uname.machine,
        kernel=uname.release,
        cpu=read_cpu(),
        kvm_modules=loaded_kvm_modules(),
        device=device,
        probe=probe,
        probe_error=probe_error,
        seccomp_user_notif=seccomp_user_notif_available(),
        qemu_version=qemu,
        libvirt_version=libvirt,
        lab_host=is_lab_host(),
    )
