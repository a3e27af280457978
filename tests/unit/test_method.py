"""Policy method (issue 16): slot, vm, auto; the uncached-display guard rail; the host's
allowed methods; the plan records the method."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import pytest

from ncdma.cli.check import check_json, check_text
from ncdma.errors import PolicyError
from ncdma.model.domain import Domain, VideoDevice
from ncdma.model.hostreport import CpuInfo
from ncdma.model.plan import Plan, StartRefusal, WrapperPlan, decide_plan
from ncdma.model.policy import Method, Policy, parse_policy
from ncdma.model.verdict import Mode, decide_mode
from ncdma.settings import Settings
from ncdma.virt.domain import parse_domain
from tests.unit.hostreports import UNPATCHED_AMD, kernel_probe, variant

SETTINGS = Settings(wrapper=Path("/usr/local/libexec/ncdma/ncdma-qemu"))
VGA = VideoDevice("video0", "virtio-vga", 64 << 20)
DOMAIN = Domain("vm", "u-1", "/usr/local/libexec/ncdma/ncdma-qemu", (VGA,), Policy())
# Debian 13's 6.12 under an emulated Skylake-X (FACTS.md): flag EINVAL, quirk bit 9 offered
UPSTREAM_INTEL = variant(kernel="6.12.117", probe=kernel_probe(errno.EINVAL, quirks=0x7FF))
PATCHED_ONLY = variant(probe=kernel_probe(0, quirks=0x5FF))
BOTH = variant(probe=kernel_probe(0, quirks=0x7FF))
NO_SELF_SNOOP = variant(kernel="6.12.117", probe=kernel_probe(errno.EINVAL, quirks=0x7FF),
                        cpu=CpuInfo("GenuineIntel", "Intel", vmx=True, ept=True, svm=False,
                                    self_snoop=False))


def _plan(report, method: Method, require: bool = False, displays: tuple[str, ...] = (),
          allow: bool = False, gpus=(VGA,)):
    policy = Policy(require=require, method=method, allow_uncached_display=allow)
    domain = dataclasses.replace(DOMAIN, policy=policy, uncached_displays=displays, gpus=gpus)
    return decide_plan(domain, decide_mode(report), SETTINGS)


def test_absent_method_keeps_todays_meaning_and_xml() -> None:
    assert parse_policy({}).method is Method.SLOT
    assert not parse_policy({}).allow_uncached_display
    assert "method" not in Policy().attributes()
    policy = parse_policy({"method": "vm", "allow_uncached_display": "yes"})
    assert (policy.method, policy.allow_uncached_display) == (Method.VM, True)
    assert parse_policy(policy.attributes()) == policy


@pytest.mark.parametrize("attributes, named", [
    ({"method": "whole"}, "'method'"), ({"allow_uncached_display": "1"},
                                        "'allow_uncached_display'")])
def test_bad_method_attributes_name_themselves(attributes, named) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(attributes)
    assert named in caught.value.message


@pytest.mark.parametrize("report, methods", [
    (PATCHED_ONLY, ("slot",)),
    (UPSTREAM_INTEL, ("vm",)),
    (BOTH, ("slot", "vm")),
    (UNPATCHED_AMD, ()),
    (NO_SELF_SNOOP, ()),
    (variant(probe=None, probe_error="no /dev/kvm"), ()),
])
def test_the_host_allows_each_method_on_its_own_evidence(report, methods) -> None:
    verdict = decide_mode(report)
    assert verdict.methods == methods
    assert bool(verdict.vm_reasons) == ("vm" not in methods)


def test_vm_reasons_name_the_quirk_bit_and_the_cpu() -> None:
    reasons = decide_mode(UNPATCHED_AMD).vm_reasons
    assert "KVM_X86_QUIRK_IGNORE_GUEST_PAT (0x200)" in reasons[0] and "0x5ff" in reasons[0]
    assert "AuthenticAMD" in reasons[1]
    assert "self-snoop" in decide_mode(NO_SELF_SNOOP).vm_reasons[0]


def test_check_reports_both_methods_in_json_and_text() -> None:
    verdict = decide_mode(UPSTREAM_INTEL)
    document = check_json(UPSTREAM_INTEL, verdict)
    assert document["methods"] == ["vm"]
    vm, slot = document["method_checks"]["vm"], document["method_checks"]["slot"]
    assert (vm["allowed"], vm["quirk_offered"], vm["quirks2_mask"], vm["self_snoop"],
            vm["ept"]) == (True, True, 0x7FF, True, True)
    assert (slot["allowed"], slot["flag_accepted"]) == (False, False)
    assert "EINVAL" in slot["reasons"][0]
    text = check_text(UPSTREAM_INTEL, verdict)
    assert "methods allowed: vm " in text and "method vm unavailable" not in text
    assert "method vm unavailable:" in check_text(UNPATCHED_AMD, decide_mode(UNPATCHED_AMD))


def test_vm_on_a_quirk_host_is_enforce_and_flags_no_slot() -> None:
    plan = _plan(UPSTREAM_INTEL, Method.VM, require=True)
    assert isinstance(plan, Plan)
    assert (plan.mode, plan.method, plan.requested_method) == (Mode.ENFORCE, Method.VM, Method.VM)
    assert not plan.tags_slots and "whole VM" in plan.mode_text
    assert Plan.from_json(plan.to_json()) == plan
    wrapper = WrapperPlan.of(plan)
    assert wrapper.disables_quirk and WrapperPlan.from_json(wrapper.to_json()) == wrapper


def test_vm_needs_no_virtio_gpu_bar() -> None:
    plan = _plan(UPSTREAM_INTEL, Method.VM, require=True, gpus=())
    assert isinstance(plan, Plan) and plan.mode is Mode.ENFORCE and plan.reasons == ()


def test_vm_where_the_quirk_is_not_offered_refuses_or_audits_with_the_reason() -> None:
    refusal = _plan(UNPATCHED_AMD, Method.VM, require=True)
    assert isinstance(refusal, StartRefusal) and "\n" not in refusal.reason
    assert "method vm" in refusal.reason and "KVM_X86_QUIRK_IGNORE_GUEST_PAT" in refusal.reason
    plan = _plan(UNPATCHED_AMD, Method.VM)
    assert (plan.mode, plan.method) == (Mode.AUDIT, Method.VM)
    assert not WrapperPlan.of(plan).disables_quirk
    assert any("KVM_X86_QUIRK_IGNORE_GUEST_PAT" in reason for reason in plan.reasons)


@pytest.mark.parametrize("require", [True, False])
def test_vm_with_an_uncached_display_is_refused_in_one_line(require) -> None:
    refusal = _plan(UPSTREAM_INTEL, Method.VM, require, ("<video><model type='vga'>",))
    assert isinstance(refusal, StartRefusal) and "\n" not in refusal.reason
    assert "<video><model type='vga'>" in refusal.reason
    assert "allow_uncached_display='yes'" in refusal.reason
    plan = _plan(UPSTREAM_INTEL, Method.VM, require, ("-vga std",), allow=True)
    assert plan.mode is Mode.ENFORCE and plan.method is Method.VM


@pytest.mark.parametrize("report, method, mode", [
    (BOTH, Method.SLOT, Mode.ENFORCE),          # slot first where the kernel has the flag
    (PATCHED_ONLY, Method.SLOT, Mode.ENFORCE),
    (UPSTREAM_INTEL, Method.VM, Mode.ENFORCE),  # else vm
    (UNPATCHED_AMD, Method.SLOT, Mode.AUDIT),   # else audit
])
def test_auto_resolves_slot_then_vm_then_audit(report, method, mode) -> None:
    plan = _plan(report, Method.AUTO)
    assert (plan.method, plan.mode, plan.requested_method) == (method, mode, Method.AUTO)


def test_auto_does_not_pick_vm_for_an_uncached_display_and_says_why() -> None:
    plan = _plan(UPSTREAM_INTEL, Method.AUTO, displays=("-vga std",))
    assert (plan.method, plan.mode) == (Method.SLOT, Mode.AUDIT)
    assert any(reason.startswith("method vm: its display -vga std") for reason in plan.reasons)
    assert isinstance(_plan(UPSTREAM_INTEL, Method.AUTO, True, ("-vga std",)), StartRefusal)


def test_a_plan_written_before_methods_existed_reads_as_slot() -> None:
    data = _plan(PATCHED_ONLY, Method.SLOT).to_json()
    del data["method"], data["requested_method"]
    assert Plan.from_json(data).method is Method.SLOT


def _xml(devices: str = "", commandline: str = "") -> str:
    return ("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
            "<name>d</name><devices>" + devices + "</devices>"
            "<qemu:commandline>" + commandline + "</qemu:commandline></domain>")


def _args(*values: str) -> str:
    return "".join(f"<qemu:arg value='{value}'/>" for value in values)


@pytest.mark.parametrize("xml, displays", [
    (_xml("<video><model type='vga'/></video>"), ("<video><model type='vga'>",)),
    (_xml("<video><model type='bochs'/></video><video><model type='cirrus'/></video>"),
     ("<video><model type='bochs'>", "<video><model type='cirrus'>")),
    (_xml(commandline=_args("-vga", "std")), ("-vga std",)),
    (_xml(commandline=_args("-vga", "cirrus", "-device", "bochs-display,id=d0")),
     ("-vga cirrus", "-device bochs-display")),
    (_xml(commandline=_args("-device", '{"driver": "VGA", "id": "v"}')), ("-device VGA",)),
    (_xml("<video><model type='virtio'/></video><video><model type='qxl'/></video>",
          _args("-vga", "virtio", "-device", "virtio-gpu-pci")), ()),
])
def test_uncached_displays_in_every_form_the_xml_gives_them(xml, displays) -> None:
    assert parse_domain(xml).uncached_displays == displays
