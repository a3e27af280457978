"""The pure start/migrate decision for an opted-in domain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ncdma.model.domain import Domain, VideoDevice
from ncdma.model.plan import Plan, StartRefusal, decide_plan
from ncdma.model.policy import Bar, Policy, PolicyMode
from ncdma.model.verdict import Mode, Verdict
from ncdma.settings import Settings

SETTINGS = Settings(wrapper=Path("/usr/local/libexec/ncdma/ncdma-qemu"))
VGA = VideoDevice("video0", "virtio-vga", 64 << 20)
PCI_NO_HOSTMEM = VideoDevice("video1", "virtio-gpu-pci", 0)
DOMAIN = Domain("vm", "u-1", "/usr/local/libexec/ncdma/ncdma-qemu", (VGA,), Policy())
ENFORCE = Verdict(Mode.ENFORCE, (), ())
AUDIT = Verdict(Mode.AUDIT, ("kernel rejects the flag",), ())
NONE = Verdict(Mode.NONE, ("no /dev/kvm",), ())


def _with(policy: Policy | None = None, **changes) -> Domain:
    return dataclasses.replace(DOMAIN, policy=policy or DOMAIN.policy, **changes)


def test_not_opted_in_or_off_means_nothing_to_do() -> None:
    assert decide_plan(dataclasses.replace(DOMAIN, policy=None), ENFORCE, SETTINGS) is None
    assert decide_plan(_with(Policy(mode=PolicyMode.OFF)), ENFORCE, SETTINGS) is None


def test_enforce_on_an_enforcing_host() -> None:
    plan = decide_plan(DOMAIN, ENFORCE, SETTINGS)
    assert isinstance(plan, Plan)
    assert (plan.mode, plan.devices, plan.flag, plan.emulator) == \
        (Mode.ENFORCE, ("video0",), 8, "/usr/bin/qemu-system-x86_64")
    assert Plan.from_json(plan.to_json()) == plan


def test_enforce_falls_back_to_audit_and_says_why() -> None:
    plan = decide_plan(DOMAIN, AUDIT, SETTINGS)
    assert plan.mode is Mode.AUDIT and plan.reasons == ("kernel rejects the flag",)


def test_require_refuses_with_the_host_reasons() -> None:
    refusal = decide_plan(_with(Policy(require=True)), AUDIT, SETTINGS)
    assert isinstance(refusal, StartRefusal)
    assert refusal.reason.startswith("ncdma: refusing to start vm: its policy requires enforce")
    assert "kernel rejects the flag" in refusal.reason and "\n" not in refusal.reason


def test_audit_request_is_audit_on_any_usable_host_and_none_on_unusable() -> None:
    audit = Policy(mode=PolicyMode.AUDIT, require=True)
    assert decide_plan(_with(audit), ENFORCE, SETTINGS).mode is Mode.AUDIT
    assert decide_plan(_with(audit), AUDIT, SETTINGS).mode is Mode.AUDIT
    assert isinstance(decide_plan(_with(audit), NONE, SETTINGS), StartRefusal)
    assert decide_plan(_with(Policy(mode=PolicyMode.AUDIT)), NONE, SETTINGS).mode is Mode.NONE


def test_emulator_must_be_the_wrapper_at_start_but_not_when_receiving() -> None:
    foreign = _with(emulator="/usr/bin/qemu-system-x86_64")
    refusal = decide_plan(foreign, ENFORCE, SETTINGS)
    assert isinstance(refusal, StartRefusal) and "run `ncdma enable vm` again" in refusal.reason
    assert isinstance(decide_plan(foreign, ENFORCE, SETTINGS, "accept the incoming migration of"),
                      Plan)


@pytest.mark.parametrize("gpus, bars, devices", [
    ((VGA,), {Bar.VRAM}, ("video0",)),
    ((PCI_NO_HOSTMEM,), {Bar.VRAM}, ()),
    ((PCI_NO_HOSTMEM,), {Bar.HOSTMEM}, ()),
    ((VGA, PCI_NO_HOSTMEM), {Bar.HOSTMEM, Bar.VRAM}, ("video0",)),
    ((), {Bar.HOSTMEM}, ()),
])
def test_devices_selected_by_bars(gpus, bars, devices) -> None:
    plan = decide_plan(_with(Policy(bars=frozenset(bars)), gpus=gpus), ENFORCE, SETTINGS)
    assert plan.devices == devices
    assert bool(plan.reasons) == (not devices)


def test_nothing_to_tag_with_require_is_refused() -> None:
    refusal = decide_plan(_with(Policy(require=True), gpus=(PCI_NO_HOSTMEM,)), ENFORCE, SETTINGS)
    assert isinstance(refusal, StartRefusal)
    assert "no virtio-gpu device has a BAR selected by bars='hostmem'" in refusal.reason


@pytest.mark.parametrize("model", ["virtio-gpu-pci", "virtio-gpu-ccw", "virtio-gpu-device"])
def test_a_vram_policy_without_a_vga_device_is_refused_with_require(model) -> None:
    # what an aarch64, s390x or virtio-mmio <video type='virtio'> becomes: no vram BAR
    gpu = VideoDevice("video0", model, 0)
    refusal = decide_plan(_with(Policy(require=True, bars=frozenset({Bar.VRAM})), gpus=(gpu,)),
                          ENFORCE, SETTINGS)
    assert isinstance(refusal, StartRefusal) and "bars='vram'" in refusal.reason


@pytest.mark.parametrize("model", ["virtio-gpu-ccw", "virtio-gpu-device"])
def test_hostmem_off_pci_has_no_bar_to_tag(model) -> None:
    gpu = VideoDevice("video0", model, 64 << 20)
    refusal = decide_plan(_with(Policy(require=True), gpus=(gpu,)), ENFORCE, SETTINGS)
    assert isinstance(refusal, StartRefusal) and "bars='hostmem'" in refusal.reason
