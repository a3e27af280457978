"""Which mode a host can run, and every reason why not a better one. Pure: no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ncdma.standin import label

if TYPE_CHECKING:  # plans name modes without probing anything
    from ncdma.model.hostreport import HostReport


class Mode(str, enum.Enum):
    """What ncdma can do on a host.

    enforce: the guard sets the flag on virtio-gpu BAR slots.
    audit:   the guard traps and journals memslots but never changes them.
    none:    VMs cannot be guarded at all on this host.
    """

    ENFORCE = "enforce"
    AUDIT = "audit"
    NONE = "none"


@dataclass(frozen=True)
class Verdict:
    """The best mode for a host; ``reasons`` say why it is not better, ``notes`` add context."""

    mode: Mode
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    stand_in: bool = False  # enforce through the lab's stand-in flag (ncdma.standin)


def _blockers(report: HostReport) -> list[str]:
    """Reasons that leave no mode at all: the guard could not trap anything."""
    blockers = []
    if report.arch != "x86_64":
        blockers.append(f"architecture is {report.arch}: ncdma supports x86_64 hosts only")
    if report.probe is None:
        blockers.append(report.probe_error)
    if not report.seccomp_user_notif:
        blockers.append("the kernel lacks seccomp user notification (SECCOMP_RET_USER_NOTIF): "
                        "the guard cannot trap QEMU's memslot ioctls; use Linux 5.5 or later "
                        "with CONFIG_SECCOMP_FILTER")
    return blockers


def _kernel_reasons(report: HostReport) -> list[str]:
    """Why the kernel does not accept the flag (empty when it does)."""
    probe = report.probe
    if probe is None or probe.flag_supported:
        return []
    answers = ", ".join(f"{answer.ioctl}: {answer.outcome}" for answer in probe.answers)
    if probe.flag_rejected:
        return [f"kernel {report.kernel} rejects KVM_MEM_NON_COHERENT_DMA ({probe.flag:#x}) "
                f"({answers}): boot a kernel with the series 'KVM: Honor guest memory types for "
                f"virtio GPU devices', or set the flag value that kernel uses"]
    return [f"the kernel probe of flag {probe.flag:#x} failed ({answers}): "
            f"see the kernel log for the cause"]


def _cpu_reasons(report: HostReport) -> list[str]:
    """Why the flag would have no effect on this CPU (empty on Intel with VMX and EPT)."""
    cpu = report.cpu
    if not cpu.is_intel:
        return [f"CPU vendor is {cpu.vendor}: the flag changes memory types only on Intel VMX "
                f"with EPT (AMD NPT already honors guest PAT)"]
    if not cpu.vmx:
        return ["the CPU does not expose VMX: enable Intel VT-x in the firmware"]
    if not cpu.ept:
        return ["EPT is not in use: load kvm_intel with ept=1 (without EPT the flag has no effect)"]
    return []


def _notes(report: HostReport) -> list[str]:
    """Context that does not change the mode."""
    notes = []
    if report.qemu_version is None:
        notes.append("QEMU is not installed: install qemu-system-x86 to run VMs")
    if report.libvirt_version is None:
        notes.append("libvirt's QEMU daemon is not installed: install libvirt-daemon-driver-qemu")
    if report.probe is not None and report.probe.ignore_guest_pat_quirk_disableable:
        notes.append("KVM_X86_QUIRK_IGNORE_GUEST_PAT can be disabled: the whole-VM upstream "
                     "alternative is available on this host")
    return notes


def _stand_in(report: HostReport) -> Verdict:
    """The lab's stand-in flag (the probe asked for it): the CPU gate lifted on a lab host,
    never enforce anywhere else."""
    flag = report.probe.flag if report.probe is not None else 0
    if not report.lab_host:
        return Verdict(Mode.AUDIT, (f"the {label(flag)} was asked for, but this is not a lab "
                                    f"host: remove lab_stand_in from ncdma.conf",
                                    *_cpu_reasons(report)), tuple(_notes(report)))
    reasons = tuple(_kernel_reasons(report))
    notes = (f"{label(flag)}: KVM_MEM_READONLY stands in for KVM_MEM_NON_COHERENT_DMA on this "
             f"lab host, whatever the CPU; it proves ncdma's enforce paths, not memory types",
             *_notes(report))
    return Verdict(Mode.AUDIT if reasons else Mode.ENFORCE, reasons, notes, not reasons)


def decide(report: HostReport, stand_in: bool = False) -> Verdict:
    """The best mode ``report`` allows, with every reason it is not better.

    ``stand_in``: the report's probe asked for the lab's stand-in flag (settings
    ``lab_stand_in``); only a lab host's verdict can then be enforce.
    """
    notes = tuple(_notes(report))
    blockers = _blockers(report)
    if blockers:
        return Verdict(Mode.NONE, tuple(blockers), notes)
    if stand_in:
        return _stand_in(report)
    reasons = _kernel_reasons(report) + _cpu_reasons(report)
    return Verdict(Mode.AUDIT if reasons else Mode.ENFORCE, tuple(reasons), notes)
