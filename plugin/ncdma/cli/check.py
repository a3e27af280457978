"""The two views of a host report: text for a person, a JSON document for programs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ncdma.model.hostreport import HostReport
from ncdma.model.verdict import Mode, Verdict
from ncdma.standin import label

SCHEMA_VERSION = 1

_MODE_TEXT = {
    Mode.ENFORCE: "enforce (the flag will be set on virtio-gpu BAR memslots)",
    Mode.AUDIT: "audit only (memslots are journaled, never tagged)",
    Mode.NONE: "none (VMs cannot be guarded on this host)",
}


def _mode_text(report: HostReport, verdict: Verdict) -> str:
    if verdict.stand_in and report.probe is not None:
        return (f"enforce with the {label(report.probe.flag)} (KVM_MEM_READONLY set on "
                f"virtio-gpu BAR memslots in place of the flag: the lab only)")
    return _MODE_TEXT[verdict.mode]


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def check_json(report: HostReport, verdict: Verdict) -> dict[str, Any]:
    """The JSON document of ``ncdma check --json``."""
    host = asdict(report)
    if report.probe is not None:
        host["probe"]["flag_supported"] = report.probe.flag_supported
        host["probe"]["ignore_guest_pat_quirk_disableable"] = \
            report.probe.ignore_guest_pat_quirk_disableable
        for answer, data in zip(report.probe.answers, host["probe"]["answers"]):
            data["outcome"] = answer.outcome
    probe = report.probe
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": verdict.mode.value,
        "enforce_possible": verdict.mode is Mode.ENFORCE,
        "methods": list(verdict.methods),
        "method_checks": {
            "slot": {"allowed": "slot" in verdict.methods,
                     "flag_accepted": bool(probe and probe.flag_supported),
                     "reasons": list(verdict.reasons)},
            "vm": {"allowed": "vm" in verdict.methods,
                   "quirk_offered": bool(probe and probe.ignore_guest_pat_quirk_disableable),
                   "quirks2_mask": probe.quirks2_mask if probe else None,
                   "self_snoop": report.cpu.self_snoop, "vmx": report.cpu.vmx,
                   "ept": report.cpu.ept, "reasons": list(verdict.vm_reasons)},
        },
        "stand_in_flag": report.probe.flag if verdict.stand_in and report.probe else None,
        "reasons": list(verdict.reasons),
        "notes": list(verdict.notes),
        "host": host,
    }


def _probe_rows(report: HostReport) -> list[tuple[str, str]]:
    probe = report.probe
    if probe is None:
        return [("KVM", f"{report.device}: unusable (see above)")]
    answers = "; ".join(f"{answer.ioctl} {answer.outcome}" for answer in probe.answers)
    quirk = "can" if probe.ignore_guest_pat_quirk_disableable else "cannot"
    return [
        ("KVM", f"{probe.device}, API {probe.api_version}, modules "
                f"{', '.join(report.kvm_modules) or 'none'}"),
        (f"flag {probe.flag:#x}", answers),
        ("quirks2 mask", f"{probe.quirks2_mask:#x} (IGNORE_GUEST_PAT {quirk} be disabled)"),
        ("probe time", f"{probe.duration_ms:.1f} ms"),
    ]


def check_text(report: HostReport, verdict: Verdict) -> str:
    """The human view of ``ncdma check``."""
    cpu = report.cpu
    rows = [
        ("CPU", f"{cpu.model} ({cpu.vendor}); VMX {_yes_no(cpu.vmx)}, EPT {_yes_no(cpu.ept)}, "
                f"SVM {_yes_no(cpu.svm)}, self-snoop {_yes_no(cpu.self_snoop)}"),
        *_probe_rows(report),
        ("seccomp notify", "available" if report.seccomp_user_notif else "missing"),
        ("QEMU", report.qemu_version or "not installed"),
        ("libvirt", report.libvirt_version or "not installed"),
    ]
    lines = [f"ncdma check on {report.hostname} (Linux {report.kernel}, {report.arch})",
             f"mode: {_mode_text(report, verdict)}"]
    if verdict.reasons:
        better = "enforce" if verdict.mode is Mode.AUDIT else "audit or enforce"
        lines.append(f"why not {better}:")
        lines.extend(f"  - {reason}" for reason in verdict.reasons)
    lines.append(f"methods allowed: {', '.join(verdict.methods) or 'none'} (slot: the flag on "
                 f"virtio-gpu BAR memslots; vm: guest PAT honored for the whole VM)")
    if verdict.vm_reasons and verdict.mode is not Mode.NONE:
        lines.append("method vm unavailable:")
        lines.extend(f"  - {reason}" for reason in verdict.vm_reasons)
    lines.append("host:")
    lines.extend(f"  {name:<15} {value}" for name, value in rows)
    if verdict.notes:
        lines.append("notes:")
        lines.extend(f"  - {note}" for note in verdict.notes)
    return "\n".join(lines)
