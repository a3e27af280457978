"""The hook's prepare with method='vm' on this machine (issue 16): its kernel does not offer
KVM_X86_QUIRK_IGNORE_GUEST_PAT, so vm is refused (require='yes') or audited with the reason;
an uncached display is refused whatever the host."""

from __future__ import annotations

import json

from tests.host.test_hook import config, domain_xml, installed_hook, plan_path, run_hook

__all__ = ["config", "installed_hook"]  # fixtures


def test_method_vm_here_is_refused_with_require_in_one_line(config, installed_hook) -> None:
    done = run_hook(installed_hook, "prepare", domain_xml("method='vm' require='yes'"))
    assert done.returncode == 1
    [line] = done.stderr.decode().splitlines()
    assert line.startswith("ncdma: refusing to start vm1: its policy requires enforce mode "
                           "(method vm) but this host allows audit: kernel ")
    assert "KVM_X86_QUIRK_IGNORE_GUEST_PAT (0x200)" in line
    assert not plan_path(config).exists()


def test_method_vm_here_runs_in_audit_and_the_plan_says_why(config, installed_hook) -> None:
    done = run_hook(installed_hook, "prepare", domain_xml("method='vm'"))
    assert done.returncode == 0, done.stderr
    plan = json.loads(plan_path(config).read_text())
    assert (plan["mode"], plan["method"], plan["requested_method"]) == ("audit", "vm", "vm")
    assert any("KVM_X86_QUIRK_IGNORE_GUEST_PAT" in reason for reason in plan["reasons"])
    wrapper = json.loads(plan_path(config).with_name("wrapper.json").read_text())
    assert (wrapper["mode"], wrapper["method"]) == ("audit", "vm")


def test_method_vm_with_a_stdvga_display_is_refused_at_prepare(config, installed_hook) -> None:
    xml = domain_xml("method='vm'").replace(
        b"</devices>", b"<video><model type='vga'/></video></devices>")
    done = run_hook(installed_hook, "prepare", xml)
    assert done.returncode == 1
    [line] = done.stderr.decode().splitlines()
    assert "with method='vm': its display <video><model type='vga'>" in line
    assert "allow_uncached_display='yes'" in line
    allowed = domain_xml("method='vm' allow_uncached_display='yes'").replace(
        b"</devices>", b"<video><model type='vga'/></video></devices>")
    assert run_hook(installed_hook, "prepare", allowed).returncode == 0
