"""Which mode a host can run, and every reason why not a better one. Pure: no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
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


NOT_PROBED = "the host was not probed for KVM_X86_QUIRK_IGNORE_GUEST_PAT"


@dataclass(frozen=True)
class Verdict:
    """The best mode for a host; ``reasons`` say why it is not better, ``notes`` add context.

    ``mode`` and ``reasons`` are the memslot flag's (method slot); ``vm_reasons`` say why the
    whole-VM method (KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled) cannot be used: none, it can.
    """

    mode: Mode
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    stand_in: bool = False  # enforce through the lab's stand-in flag (ncdma.standin)
    vm_reasons: tuple[str, ...] = (NOT_PROBED,)

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods this host allows (policy values: 'slot', 'vm')."""
        allowed = ("slot",) if self.mode is Mode.ENFORCE else ()
        return (*allowed, "vm") if self.mode is not Mode.NONE and not self.vm_reasons \
            else allowed


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


def vm_reasons(report: HostReport) -> list[str]:
    """Why KVM_X86_QUIRK_IGNORE_GUEST_PAT cannot be disabled to honor guest PAT for a whole VM
    (empty when it can: the kernel offers the quirk's bit, on Intel with VMX, EPT and
    self-snoop)."""
    probe, cpu = report.probe, report.cpu
    if probe is None:
        return [report.probe_error]
    reasons = []
    if not probe.ignore_guest_pat_quirk_disableable:
        reasons.append(f"kernel {report.kernel} does not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT "
                       f"(0x200) in KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2) (mask "
                       f"{probe.quirks2_mask:#x}): kernels offer it from Linux 6.16 and "
                       f"6.12.78 on, and only on Intel CPUs with EPT and self-snoop")
    if not cpu.is_intel:
        reasons.append(f"CPU vendor is {cpu.vendor}: disabling the quirk changes memory types "
                       f"only on Intel VMX with EPT (AMD NPT already honors guest PAT)")
    elif not (cpu.vmx and cpu.ept):
        reasons.append("the CPU does not run KVM with VMX and EPT: enable VT-x and load "
                       "kvm_intel with ept=1")
    elif not cpu.self_snoop:
        reasons.append("the CPU lacks self-snoop (CPUID.1:EDX bit 27, flag ss): KVM honors "
                       "guest PAT per VM only with it")
    return reasons


def _notes(report: HostReport) -> list[str]:
    """Context that does not change the mode."""
    notes = []
    if report.qemu_version is None:
        notes.append("QEMU is not installed: install qemu-system-x86 to run VMs")
    if report.libvirt_version is None:
        notes.append("libvirt's QEMU daemon is not installed: install libvirt-daemon-driver-qemu")
    if report.probe is not None and report.probe.ignore_guest_pat_quirk_disableable:
        notes.append("KVM_X86_QUIRK_IGNORE_GUEST_PAT can be disabled: the whole-VM upstream "
                     "alternative (policy method='vm') is available on this host")
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


def decide_mode(report: HostReport, stand_in: bool = False) -> Verdict:
    """The best mode ``report`` allows, with every reason it is not better.

    ``stand_in``: the report's probe asked for the lab's stand-in flag (settings
    ``lab_stand_in``); only a lab host's verdict can then be enforce.
    """
    notes = tuple(_notes(report))
    blockers = _blockers(report)
    if blockers:
        return Verdict(Mode.NONE, tuple(blockers), notes, vm_reasons=tuple(blockers))
    whole_vm = tuple(vm_reasons(report))
    if stand_in:
        return replace(_stand_in(report), vm_reasons=whole_vm)
    reasons = _kernel_reasons(report) + _cpu_reasons(report)
    return Verdict(Mode.AUDIT if reasons else Mode.ENFORCE, tuple(reasons), notes,
                   vm_reasons=whole_vm)
