"""The pure host verdict: every reason that keeps a host from enforce mode."""

from __future__ import annotations

import dataclasses
import errno

import pytest

from ncdma.kvm.probe import IoctlAnswer
from ncdma.model.verdict import Mode, decide_mode
from tests.unit.hostreports import AMD, INTEL_EPT, PATCHED_INTEL, UNPATCHED_AMD, kernel_probe, variant


def test_the_lab_stand_in_lifts_the_cpu_gate_on_a_lab_host_only() -> None:
    lab = dataclasses.replace(UNPATCHED_AMD, probe=kernel_probe(flag=0x2), lab_host=True)
    verdict = decide_mode(lab, stand_in=True)
    assert verdict.mode is Mode.ENFORCE and verdict.stand_in and not verdict.reasons
    assert any("lab stand-in flag 0x2" in note for note in verdict.notes)
    assert decide_mode(lab).mode is Mode.AUDIT  # without the setting: the CPU gate holds


@pytest.mark.parametrize("report", [PATCHED_INTEL, UNPATCHED_AMD,
                                    variant(probe=kernel_probe(flag=0x2))])
def test_no_real_hosts_verdict_becomes_enforce_through_the_stand_in(report) -> None:
    # a real host (no lab marker), even with a probe that asked for 0x2 and got it
    verdict = decide_mode(dataclasses.replace(report, probe=kernel_probe(flag=0x2)), stand_in=True)
    assert verdict.mode is not Mode.ENFORCE and not verdict.stand_in
    assert "not a lab host" in verdict.reasons[0]


def test_patched_intel_host_can_enforce() -> None:
    verdict = decide_mode(PATCHED_INTEL)
    assert verdict.mode is Mode.ENFORCE
    assert verdict.reasons == ()


def test_unpatched_amd_host_is_audit_only_with_both_reasons() -> None:
    verdict = decide_mode(UNPATCHED_AMD)
    assert verdict.mode is Mode.AUDIT
    assert len(verdict.reasons) == 2
    assert "rejects KVM_MEM_NON_COHERENT_DMA (0x8)" in verdict.reasons[0]
    assert "EINVAL" in verdict.reasons[0]
    assert "AuthenticAMD" in verdict.reasons[1]


@pytest.mark.parametrize("cpu, expected", [
    (AMD, "AuthenticAMD"),
    (dataclasses.replace(INTEL_EPT, vmx=False, ept=False), "VMX"),
    (dataclasses.replace(INTEL_EPT, ept=False), "EPT"),
])
def test_patched_kernel_without_intel_ept_is_audit_only(cpu, expected) -> None:
    verdict = decide_mode(variant(cpu=cpu))
    assert verdict.mode is Mode.AUDIT
    assert len(verdict.reasons) == 1 and expected in verdict.reasons[0]


def test_other_errno_is_reported_as_a_failed_probe_not_as_unpatched() -> None:
    verdict = decide_mode(variant(probe=kernel_probe(errno.ENOMEM)))
    assert verdict.mode is Mode.AUDIT
    assert "probe of flag 0x8 failed" in verdict.reasons[0]
    assert "ENOMEM" in verdict.reasons[0]


def test_flag_accepted_by_v2_only_is_enough() -> None:
    probe = dataclasses.replace(kernel_probe(0), answers=(
        IoctlAnswer("KVM_SET_USER_MEMORY_REGION", True, errno.EINVAL),
        IoctlAnswer("KVM_SET_USER_MEMORY_REGION2", True, 0)))
    assert decide_mode(variant(probe=probe)).mode is Mode.ENFORCE


@pytest.mark.parametrize("changes, expected", [
    ({"arch": "aarch64"}, "architecture is aarch64"),
    ({"probe": None, "probe_error": "/dev/kvm does not exist"}, "/dev/kvm does not exist"),
    ({"probe": None, "probe_error": "permission denied opening /dev/kvm"}, "permission denied"),
    ({"seccomp_user_notif": False}, "seccomp user notification"),
])
def test_blockers_leave_no_mode(changes, expected) -> None:
    verdict = decide_mode(variant(**changes))
    assert verdict.mode is Mode.NONE
    assert any(expected in reason for reason in verdict.reasons)


def test_every_blocker_is_listed_not_only_the_first() -> None:
    verdict = decide_mode(variant(arch="ppc64le", seccomp_user_notif=False,
                             probe=None, probe_error="no kvm"))
    assert len(verdict.reasons) == 3


def test_notes_name_missing_qemu_libvirt_and_the_quirk_alternative() -> None:
    verdict = decide_mode(variant(qemu_version=None, libvirt_version=None,
                             probe=kernel_probe(0, quirks=0x7FF)))
    assert verdict.mode is Mode.ENFORCE
    assert [note.split()[0] for note in verdict.notes] == \
        ["QEMU", "libvirt's", "KVM_X86_QUIRK_IGNORE_GUEST_PAT"]
