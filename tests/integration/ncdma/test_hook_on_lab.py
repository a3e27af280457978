"""The hook, enable/disable and the wrapper through real libvirtd + QEMU/KVM on the lab.

The lab's kernel is unpatched (EINVAL for the flag) and its CPU is not Intel: with the real
flag, enforce is impossible there, which is what the audit run checks ncdma says and does;
the enforce run has the lab's stand-in flag and checks the same paths in enforce mode.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from tests.integration.ncdma.conftest import LAB_XML, REPO, WRAPPERS, OptedIn, log_text

LAB_XML_PATH = REPO / "xml/examples/lab-virtio-vga.xml"


def test_enable_then_disable_restores_the_definition_exactly(opted_in: OptedIn) -> None:
    opted_in.define()
    original = opted_in.inactive_xml()
    done = opted_in.enable("h1", "--bars", "vram", "--migration", "copy")
    assert "ncdma enabled on" in done.stdout and "migration=copy" in done.stdout
    enabled = opted_in.inactive_xml()
    assert f"<emulator>{WRAPPERS['h1']}</emulator>" in enabled
    assert "urn:ncdma:domain:1" in enabled and "emulator='/usr/bin/qemu-system-x86_64'" \
        in enabled.replace('"', "'")
    assert opted_in.ncdma("h1", "disable", opted_in.name).returncode == 0
    assert opted_in.inactive_xml() == original


def test_enable_errors_are_one_line_with_a_hint(opted_in: OptedIn) -> None:
    missing = opted_in.ncdma("h1", "enable", "no-such-domain")
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "ncdma: error: no domain has the ID, UUID or name 'no-such-domain'")
    assert "virsh list --all" in missing.stderr and "Traceback" not in missing.stderr
    opted_in.define()
    bad = opted_in.ncdma("h1", "enable", opted_in.name, "--bars", "everything")
    assert bad.returncode == 2 and "attribute 'bars'" in bad.stderr  # a usage error
    assert "urn:ncdma" not in opted_in.inactive_xml()


def test_opted_in_vm_starts_in_the_hosts_mode_through_the_wrapper(opted_in: OptedIn) -> None:
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram")
    opted_in.lab.host("h1").virsh("start", opted_in.name)
    assert opted_in.state() == "running"
    plan = opted_in.plan()
    assert (plan["requested"], plan["mode"], plan["devices"]) == \
        ("enforce", opted_in.mode, ["video0"])
    if opted_in.enforce:
        assert plan["stand_in"] and plan["flag"] == 0x2 and not plan["reasons"]
    else:
        assert any("EINVAL" in reason for reason in plan["reasons"]) and not plan["stand_in"]
    # the wrapper exec'd QEMU in place: the pid libvirt knows is QEMU's own
    # (pids are the host's own: read its /proc)
    exe = os.readlink(opted_in.lab.host("h1").root_path / f"proc/{opted_in.qemu_pid()}/exe")
    assert exe.endswith("qemu-system-x86_64"), exe
    log = log_text(opted_in.lab.host("h1"))
    assert f"{opted_in.name}: mode {opted_in.mode_text} (requested enforce)" in log
    assert f"{opted_in.name}: guard " in log and f"attached, {opted_in.mode_text} mode" in log
    opted_in.lab.host("h1").virsh("destroy", opted_in.name)
    assert opted_in.plan() is None, "stopped/release must clean the domain's state"


def test_required_enforce_is_refused_in_virsh_start_unless_the_host_allows_it(
        opted_in: OptedIn) -> None:
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram", "--require", "yes")
    done = opted_in.lab.host("h1").virsh("start", opted_in.name, check=False)
    if opted_in.enforce:
        assert done.returncode == 0, done.stderr
        assert opted_in.plan()["mode"] == "enforce"
        return
    assert done.returncode != 0
    assert (f"ncdma: refusing to start {opted_in.name}: its policy requires enforce mode but "
            f"this host allows audit") in done.stderr
    assert opted_in.state() == "shut off" and opted_in.plan() is None


def test_method_vm_through_libvirt_refused_with_require_else_audited_with_the_reason(
        opted_in: OptedIn) -> None:
    # the lab's kernel (this machine's) does not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT, and
    # the lab's stand-in is the memslot flag's only: method vm is audit in both modes
    h1 = opted_in.lab.host("h1")
    # install-host installed method vm's preload library (built beforehand: the lab's hosts
    # have no compiler) where its ncdma.conf says
    library = "usr/local/libexec/ncdma/libncdma-pat.so"
    assert (h1.root_path / library).is_file()
    assert f"preload = /{library}" in (h1.root_path / "etc/ncdma/ncdma.conf").read_text()
    opted_in.define()
    opted_in.enable("h1", "--method", "vm", "--require", "yes")
    assert "method='vm'" in opted_in.inactive_xml() or 'method="vm"' in opted_in.inactive_xml()
    done = h1.virsh("start", opted_in.name, check=False)
    assert done.returncode != 0
    assert (f"ncdma: refusing to start {opted_in.name}: its policy requires enforce mode "
            f"(method vm) but this host allows audit") in done.stderr
    assert "KVM_X86_QUIRK_IGNORE_GUEST_PAT (0x200)" in done.stderr
    assert opted_in.state() == "shut off" and opted_in.plan() is None
    opted_in.enable("h1", "--require", "no")
    h1.virsh("start", opted_in.name)
    try:
        plan = opted_in.plan()
        assert plan is not None and (plan["mode"], plan["method"]) == ("audit", "vm"), plan
        status = opted_in.ncdma("h1", "status", opted_in.name).stdout
        assert "method: vm (requested vm)" in status
        assert "guest PAT: NOT honored (mode audit" in status
    finally:
        h1.virsh("destroy", opted_in.name)


def test_policy_written_by_hand_with_a_foreign_emulator_or_bad_value_is_refused(
        opted_in: OptedIn) -> None:
    policy = "<metadata><n:ncdma xmlns:n='urn:ncdma:domain:1' bars='vram' {}/></metadata>"
    opted_in.define(xml=opted_in_xml(policy.format("")))
    done = opted_in.lab.host("h1").virsh("start", opted_in.name, check=False)
    assert "its <emulator> is /usr/bin/qemu-system-x86_64, not ncdma's wrapper" in done.stderr
    opted_in.define(xml=opted_in_xml(policy.format("mode='loud'"), WRAPPERS["h1"]))
    done = opted_in.lab.host("h1").virsh("start", opted_in.name, check=False)
    assert "attribute 'mode' is 'loud' (allowed values: enforce, audit, off)" in done.stderr
    assert "Traceback" not in done.stderr


def opted_in_xml(metadata: str, emulator: str | None = None) -> str:
    """The lab domain with ``metadata`` and, if given, another <emulator>."""
    xml = LAB_XML.replace("<memory", f"{metadata}<memory", 1)
    return xml.replace("/usr/bin/qemu-system-x86_64", emulator) if emulator else xml


def test_migration_runs_the_hooks_on_both_sides_and_rewrites_the_emulator(
        opted_in: OptedIn) -> None:
    h1, h2 = opted_in.lab.host("h1"), opted_in.lab.host("h2")
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram", "--migration", "any")  # plain virsh: opted into
    h1.virsh("start", opted_in.name)
    h1.virsh("migrate", "--live", opted_in.name, f"qemu+ssh://{h2.address}/system")
    assert opted_in.state("h2") == "running" and opted_in.state("h1") == "shut off"
    live = h2.virsh("dumpxml", opted_in.name).stdout
    assert f"<emulator>{WRAPPERS['h2']}</emulator>" in live
    assert opted_in.plan("h2")["mode"] == opted_in.mode
    assert opted_in.plan("h1") is None, "h1's stopped/release hooks clean up after it"
    assert "migrate with <emulator> rewritten to this host's wrapper" in log_text(h2)
    # h2's own wrapper path does not exist on h1, and libvirt checks the emulator before
    # any hook runs: the way back names h1's wrapper in the XML, as an operator would.
    back = h2.virsh("dumpxml", "--migratable", opted_in.name).stdout
    h2.run(["tee", "/tmp/back.xml"], input=back.replace(WRAPPERS["h2"], WRAPPERS["h1"]),
           check=True)
    h2.virsh("migrate", "--live", "--xml", "/tmp/back.xml", opted_in.name,
             f"qemu+ssh://{h1.address}/system")
    assert opted_in.state("h1") == "running"
    assert opted_in.plan("h2") is None and opted_in.plan("h1")["mode"] == opted_in.mode


def test_destination_that_cannot_honor_the_policy_refuses_and_the_source_keeps_running(
        opted_in: OptedIn) -> None:
    h1, h2 = opted_in.lab.host("h1"), opted_in.lab.host("h2")
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram")
    h1.virsh("start", opted_in.name)
    conf = h2.root_path / "etc/ncdma/ncdma.conf"
    saved = conf.read_text()
    try:
        conf.write_text(saved + "hook_timeout = forever\n")
        done = h1.virsh("migrate", "--live", opted_in.name, f"qemu+ssh://{h2.address}/system",
                        check=False)
    finally:
        conf.write_text(saved)
    assert done.returncode != 0
    assert "hook_timeout = 'forever' is invalid" in done.stderr
    assert opted_in.state("h1") == "running" and opted_in.state("h2") in ("", "shut off")
    assert opted_in.plan("h1")["mode"] == opted_in.mode


def test_libvirtd_restart_keeps_the_vm_running(opted_in: OptedIn) -> None:
    h1 = opted_in.lab.host("h1")
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram")
    h1.virsh("start", opted_in.name)
    qemu = opted_in.qemu_pid()
    h1.run(["sh", "-c", 'kill "$(cat /run/libvirtd.pid)"'], check=True)
    deadline = time.monotonic() + 30
    while h1.libvirt_answers() and time.monotonic() < deadline:
        time.sleep(0.2)
    h1.run(["libvirtd", "-d"], check=True)
    while not h1.libvirt_answers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert opted_in.state() == "running" and opted_in.qemu_pid() == qemu
    assert f"{opted_in.name}: mode {opted_in.mode_text} (requested enforce), devices video0; " \
        "reconnected" in log_text(h1)


def test_ten_opted_in_domains_start_at_once(lab, installed) -> None:
    domains = [OptedIn(lab, f"t-many-{index}") for index in range(10)]
    h1 = lab.host("h1")
    try:
        for domain in domains:
            domain.remove()
            domain.define()
            domain.enable("h1", "--bars", "vram")
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(lambda d: h1.virsh("start", d.name, check=False), domains))
        assert [r.returncode for r in results] == [0] * 10, [r.stderr for r in results]
        assert all(domain.state() == "running" for domain in domains)
        assert all(domain.plan()["mode"] == installed.mode for domain in domains)
    finally:
        for domain in domains:
            domain.remove()


def test_check_inside_a_lab_host_reports_the_lab_versions(installed) -> None:
    done = installed["h1"].run(["/opt/ncdma/bin/ncdma", "check", "--json"])
    assert done.returncode == (0 if installed.enforce else 1), done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == installed.mode and report["host"]["hostname"] == "h1"
    assert report["stand_in_flag"] == (0x2 if installed.enforce else None)
    human = installed["h1"].run(["/opt/ncdma/bin/ncdma", "check"]).stdout
    assert ("mode: enforce with the lab stand-in flag 0x2" in human) == installed.enforce
    assert report["host"]["qemu_version"].startswith("10.0.")
    assert report["host"]["libvirt_version"].startswith("11.3.")


def test_example_domains_pass_libvirts_own_schema(installed) -> None:
    h1 = installed["h1"]
    for example in sorted((LAB_XML_PATH.parent).glob("*.xml")):
        name = example.stem
        done = h1.run(["virsh", "define", "--validate", f"/srv/ncdma/xml/examples/{example.name}"])
        try:
            assert done.returncode == 0, f"{example.name}: {done.stderr}"
        finally:
            h1.virsh("undefine", name, check=False)


def test_save_and_restore_run_the_restore_hook(opted_in: OptedIn, tmp_path) -> None:
    # migration='any' accepts a plain restore (the other policies' refusals:
    # test_orchestrators_on_lab.py)
    h1 = opted_in.lab.host("h1")
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram", "--migration", "any")
    h1.virsh("start", opted_in.name)
    h1.virsh("save", opted_in.name, f"/var/tmp/{opted_in.name}.save")
    assert opted_in.state() == "shut off" and opted_in.plan() is None
    try:
        h1.virsh("restore", f"/var/tmp/{opted_in.name}.save")
        assert opted_in.state() == "running" and opted_in.plan()["mode"] == opted_in.mode
    finally:
        h1.run(["rm", "-f", f"/var/tmp/{opted_in.name}.save"])
