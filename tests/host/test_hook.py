"""The libvirt hook as libvirt runs it: the real executable, real probe, real state files.

libvirt itself drives the hook in tests/integration; here every operation and every kind
of bad input is covered quickly on this machine (unpatched kernel: enforce is impossible).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ncdma.hook import entry as hook
from ncdma.store.tickets import issue
from ncdma.virt.domain import parse_domain
from ncdma.virt.ticket import ticket_of, with_ticket

REPO = Path(__file__).parents[2]
WRAPPER = "/usr/local/libexec/ncdma/ncdma-qemu"
UUID = "0b7e2a4c-1f2d-4d7a-9a51-0c3b6f1e2d44"


def domain_xml(policy: str | None = "", emulator: str = WRAPPER,
               dac_label: str | None = "+0:+0") -> bytes:
    """An opted-in virtio-vga domain; bars='vram' unless ``policy`` names bars. libvirt
    puts QEMU's DAC label (uid:gid) in the XML the prepare hook gets."""
    if policy is not None and "bars=" not in policy:
        policy = f"bars='vram' {policy}"
    metadata = f"<metadata><n:ncdma xmlns:n='urn:ncdma:domain:1' {policy}/></metadata>" \
        if policy is not None else ""
    seclabel = f"<seclabel type='dynamic' model='dac' relabel='yes'><label>{dac_label}" \
        f"</label></seclabel>" if dac_label is not None else ""
    return (f"<domain type='kvm'><name>vm1</name><uuid>{UUID}</uuid>{metadata}"
            f"<devices><emulator>{emulator}</emulator><video><model type='virtio' "
            f"primary='yes'/></video></devices>{seclabel}</domain>").encode()


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "ncdma.conf"
    path.write_text(f"[ncdma]\nstate_dir = {tmp_path}/state\nlog_file = {tmp_path}/ncdma.log\n"
                    f"syslog = no\nwrapper = {WRAPPER}\n")
    monkeypatch.setenv("NCDMA_CONFIG", str(path))
    return tmp_path


@pytest.fixture
def installed_hook(tmp_path) -> Path:
    """hooks/qemu.d/50-ncdma with its interpreter line set, as an installation does."""
    source = (REPO / "hooks/qemu.d/50-ncdma").read_text().splitlines(keepends=True)
    target = tmp_path / "50-ncdma"
    target.write_text(f"#!{sys.executable}\n" + "".join(source[1:]))
    target.chmod(0o755)
    return target


def run_hook(installed: Path, operation: str, xml: bytes) -> subprocess.CompletedProcess[bytes]:
    # libvirt's hook environment: LC_ALL=C, a minimal PATH, nothing else of ours but the config
    env = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "NCDMA_CONFIG": os.environ["NCDMA_CONFIG"]}
    return subprocess.run([str(installed), "vm1", operation, "begin", "-"], input=xml,
                          capture_output=True, env=env, timeout=30, check=False)


def plan_path(config: Path) -> Path:
    return config / "state" / "domains" / UUID / "plan.json"


def test_domain_without_ncdma_is_left_alone(config, installed_hook) -> None:
    for operation in ("prepare", "started", "migrate", "reconnect", "stopped"):
        done = run_hook(installed_hook, operation, domain_xml(policy=None))
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert not (config / "state").exists() and not (config / "ncdma.log").exists()


def test_prepare_writes_an_audit_plan_on_this_unpatched_host(config, installed_hook) -> None:
    done = run_hook(installed_hook, "prepare", domain_xml())
    assert done.returncode == 0, done.stderr
    plan = json.loads(plan_path(config).read_text())
    assert (plan["requested"], plan["mode"], plan["devices"]) == ("enforce", "audit", ["video0"])
    assert (plan["method"], plan["requested_method"]) == ("slot", "slot")  # no method: slot
    assert any("EINVAL" in reason for reason in plan["reasons"])
    assert (plan["qemu_uid"], plan["qemu_gid"]) == (0, 0)  # the DAC label's
    # written by root only; the wrapper's part readable by QEMU's group, nobody else
    assert plan_path(config).stat().st_mode & 0o777 == 0o600
    wrapper_part = json.loads(plan_path(config).with_name("wrapper.json").read_text())
    assert set(wrapper_part) == {"schema_version", "domain", "uuid", "mode", "require",
                                 "emulator", "share_device_ram", "method"}
    assert plan_path(config).with_name("wrapper.json").stat().st_mode & 0o777 == 0o640
    assert plan_path(config).parent.stat().st_mode & 0o777 == 0o710
    assert plan_path(config).parent.parent.stat().st_mode & 0o777 == 0o711
    assert "mode audit (requested enforce)" in (config / "ncdma.log").read_text()


def test_prepare_names_qemus_user_from_the_dac_label(config, installed_hook) -> None:
    done = run_hook(installed_hook, "prepare", domain_xml(dac_label="+64055:+65534"))
    assert done.returncode == 0, done.stderr
    plan = json.loads(plan_path(config).read_text())
    assert (plan["qemu_uid"], plan["qemu_gid"]) == (64055, 65534)
    assert plan_path(config).with_name("wrapper.json").stat().st_gid == 65534


def test_prepare_without_a_known_qemu_user_guards_nothing(config, installed_hook) -> None:
    """No attach could be trusted: a required policy refuses, any other runs unguarded."""
    unknown = "no-such-user-here:no-such-group-here"
    done = run_hook(installed_hook, "prepare", domain_xml(dac_label=unknown))
    assert done.returncode == 0, done.stderr
    plan = json.loads(plan_path(config).read_text())
    assert plan["mode"] == "none" and "cannot tell which user" in plan["reasons"][-1]
    done = run_hook(installed_hook, "prepare", domain_xml("mode='audit' require='yes'",
                                                          dac_label=unknown))
    assert done.returncode == 1 and b"cannot tell which user" in done.stderr


def test_prepare_refuses_required_enforce_in_one_line(config, installed_hook) -> None:
    done = run_hook(installed_hook, "prepare", domain_xml("require='yes'"))
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ncdma: refusing to start vm1: its policy requires enforce mode "
                               "but this host allows audit")
    assert not plan_path(config).exists()


def test_prepare_refuses_an_emulator_that_is_not_the_wrapper(config, installed_hook) -> None:
    done = run_hook(installed_hook, "prepare", domain_xml(emulator="/usr/bin/qemu-system-x86_64"))
    assert done.returncode == 1
    assert b"not ncdma's wrapper /usr/local/libexec/ncdma/ncdma-qemu" in done.stderr


def test_invalid_metadata_is_refused_naming_the_attribute(config, installed_hook) -> None:
    done = run_hook(installed_hook, "prepare", domain_xml("mode='loud'"))
    assert done.returncode == 1
    assert b"attribute 'mode' is 'loud' (allowed values: enforce, audit, off)" in done.stderr
    assert b"Traceback" not in done.stderr


def test_started_without_guard_fails_only_when_required(config, installed_hook) -> None:
    assert run_hook(installed_hook, "prepare", domain_xml("mode='audit' require='yes'")).returncode == 0
    done = run_hook(installed_hook, "started", domain_xml("mode='audit' require='yes'"))
    assert done.returncode == 1 and b"runs without its memslot guard" in done.stderr
    assert run_hook(installed_hook, "prepare", domain_xml()).returncode == 0
    assert run_hook(installed_hook, "started", domain_xml()).returncode == 0


def test_migrate_rewrites_only_a_foreign_wrapper_path(config, installed_hook) -> None:
    assert run_hook(installed_hook, "migrate", domain_xml("migration='any'")).stdout == b""
    foreign = domain_xml("migration='any'", emulator="/usr/lib/ncdma/ncdma-qemu")
    done = run_hook(installed_hook, "migrate", foreign)
    assert done.returncode == 0
    original = parse_domain(foreign)
    rewritten = parse_domain(done.stdout)
    assert rewritten.emulator == WRAPPER
    assert (rewritten.name, rewritten.uuid, rewritten.gpus, rewritten.policy) == \
        (original.name, original.uuid, original.gpus, original.policy)


def test_migrate_and_restore_refuse_what_this_host_cannot_honor(config, installed_hook) -> None:
    for operation, verb in (("migrate", "accept the incoming migration of"), ("restore", "restore")):
        done = run_hook(installed_hook, operation, domain_xml("require='yes'"))
        assert done.returncode == 1
        assert done.stderr.decode().startswith(f"ncdma: refusing to {verb} vm1")


def test_stopped_and_release_clean_up_and_never_fail(config, installed_hook) -> None:
    assert run_hook(installed_hook, "prepare", domain_xml()).returncode == 0
    assert run_hook(installed_hook, "stopped", domain_xml()).returncode == 0
    assert not plan_path(config).parent.exists()
    for operation in ("stopped", "release", "reconnect"):
        done = run_hook(installed_hook, operation, b"<domain urn:ncdma:domain:1")
        assert (done.returncode, done.stderr) == (0, b"")


def test_unknown_operations_pass(config, installed_hook) -> None:
    assert run_hook(installed_hook, "some-future-operation", domain_xml()).returncode == 0


def test_a_bad_config_refuses_start_but_not_reconnect(config, installed_hook) -> None:
    (config / "ncdma.conf").write_text("[ncdma]\nflag = 3\n")
    done = run_hook(installed_hook, "prepare", domain_xml())
    assert done.returncode == 1 and b"flag = '3' is invalid" in done.stderr
    assert run_hook(installed_hook, "reconnect", domain_xml()).returncode == 0


def test_every_operation_is_bounded_in_time(config) -> None:
    with open(config / "ncdma.conf", "a") as conf:
        conf.write("hook_timeout = 0.000001\n")
    refused = hook.run(["vm1", "prepare"], domain_xml())
    assert refused.status == 1 and "ran out of time" in refused.stderr
    # the advice names the configuration in use, not the default path
    assert f"raise hook_timeout in {config / 'ncdma.conf'}" in refused.stderr
    assert hook.run(["vm1", "reconnect"], domain_xml()).status == 0


_MARKED = st.binary(max_size=200).map(lambda b: b"<domain urn:ncdma:domain:1 " + b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(_MARKED, st.integers(0, len(domain_xml()) - 1).map(lambda n: domain_xml()[:n]),
                 st.sampled_from(["mode", "require", "migration", "bars", "emulator", "x"]).flatmap(
                     lambda name: st.text(max_size=20).map(
                         lambda v: domain_xml(f"{name}='{v.replace(chr(39), '')}'")))))
def test_hostile_input_gets_a_clean_one_line_answer(config, data) -> None:
    outcome = hook.run(["vm1", "prepare"], data)
    assert outcome.status in (0, 1)
    assert "\n" not in outcome.stderr and "Traceback" not in outcome.stderr
    if outcome.status == 1:
        assert outcome.stderr.startswith("ncdma: ")


def test_the_hook_never_opens_a_path_from_the_domain_xml(config, installed_hook) -> None:
    fifo = config / "emulator.fifo"  # a FIFO blocks whoever opens it for reading
    os.mkfifo(fifo)
    with open(config / "ncdma.conf", "a") as conf:
        conf.write("hook_timeout = 3\n")
    done = run_hook(installed_hook, "prepare", domain_xml(f"migration='copy' emulator='{fifo}'"))
    assert done.returncode == 0, done.stderr
    plan = json.loads(plan_path(config).read_text())
    assert not plan["share_device_ram"]
    assert any(f"emulator {fifo} is not this host's configured QEMU" in reason
               for reason in plan["reasons"])


def test_state_is_keyed_by_uuid_and_a_domain_without_one_is_refused(config,
                                                                    installed_hook) -> None:
    without = domain_xml().replace(f"<uuid>{UUID}</uuid>".encode(), b"")
    done = run_hook(installed_hook, "prepare", without)
    assert done.returncode == 1 and b"domain vm1 has no <uuid>" in done.stderr
    assert not (config / "state" / "domains").exists() or \
        not any((config / "state" / "domains").iterdir())
    for operation in ("stopped", "release", "reconnect", "started"):
        assert run_hook(installed_hook, operation, without).returncode == 0


def _modules_loaded(operation: str, xml: bytes) -> set[str]:
    """The modules a hook process has imported by the time it exits (issue 17: the hook's
    time is mostly imports, so what each path imports is what it costs)."""
    read, write = os.pipe()
    report = (f"import atexit, os, sys; atexit.register(lambda: os.write({write}, "
              f"' '.join(sorted(sys.modules)).encode()))\n")
    source = (REPO / "hooks/qemu.d/50-ncdma").read_text().split("\n", 1)[1]
    with subprocess.Popen([sys.executable, "-c", report + source, "vm1", operation, "begin",
                           "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, pass_fds=(write,)) as process:
        os.close(write)
        process.communicate(xml, timeout=30)
        with os.fdopen(read, "rb") as names:
            return set(names.read().decode().split())


def test_a_domain_without_ncdma_loads_no_more_than_the_entry(config) -> None:
    loaded = _modules_loaded("prepare", domain_xml(policy=None))
    assert {name for name in loaded if name.startswith("ncdma")} == {
        "ncdma", "ncdma.hook", "ncdma.hook.entry", "ncdma.model", "ncdma.model.namespace"}
    assert not loaded & {"dataclasses", "pathlib", "logging", "lxml", "enum", "signal"}


def test_each_operation_imports_only_what_it_needs(config) -> None:
    """stopped and started read no host probe; no operation loads syslog's handlers on a
    host without /dev/log, nor the version probes' thread pool."""
    for operation in ("prepare", "started", "stopped"):
        loaded = _modules_loaded(operation, domain_xml())
        assert "ncdma.hook.operations" in loaded, operation  # the opted-in path did run
        assert not loaded & {"logging.handlers", "concurrent.futures"}, operation
        probed = {"ncdma.host.report", "ncdma.kvm.probe"} <= loaded
        assert probed == (operation == "prepare"), operation


def _ticket(config: Path, uuid: str = UUID, now: float | None = None) -> str:
    """A ticket issued in the hook's state directory, as `ncdma peer ticket` issues it."""
    return issue(config / "state", uuid, os.uname().nodename,
                 time.time() if now is None else now).token


def _refused_plainly(done: subprocess.CompletedProcess[bytes], policy: str) -> str:
    line = done.stderr.decode()
    assert done.returncode == 1 and line.count("\n") == 1, line
    assert line.startswith("ncdma: refusing the incoming migration of vm1: its policy is "
                           f"migration='{policy}'") and "`ncdma migrate vm1" in line
    return line


@pytest.mark.parametrize("policy", ["migration='refuse'", "migration='copy'",
                                    "migration='skip'", "", "migration='skip' bars='hostmem,vram'"])
def test_a_plain_incoming_migration_is_refused_by_every_policy_but_any(
        config, installed_hook, policy) -> None:
    done = run_hook(installed_hook, "migrate", domain_xml(policy))
    line = _refused_plainly(done, policy.partition("migration='")[2].partition("'")[0] or "refuse")
    assert "was not started by `ncdma migrate`" in line and "--migration any" in line


@pytest.mark.parametrize("policy", ["migration='any'", "migration='skip' bars='hostmem'",
                                    "mode='off'"])
def test_a_plain_incoming_migration_goes_ahead_where_it_cannot_break_the_policy(
        config, installed_hook, policy) -> None:
    done = run_hook(installed_hook, "migrate", domain_xml(policy))
    assert (done.returncode, done.stderr) == (0, b"")


def test_a_ticket_is_accepted_once_and_stripped_from_the_xml_libvirt_keeps(
        config, installed_hook) -> None:
    ticketed = with_ticket(domain_xml("migration='copy'"), _ticket(config)).encode()
    done = run_hook(installed_hook, "migrate", ticketed)
    assert done.returncode == 0, done.stderr
    assert ticket_of(done.stdout) is None and parse_domain(done.stdout) == parse_domain(ticketed)
    assert "already used" in _refused_plainly(run_hook(installed_hook, "migrate", ticketed),
                                              "copy")


@pytest.mark.parametrize("make, words", [
    (lambda config: _ticket(config, now=time.time() - 3600), "an expired ncdma ticket"),
    (lambda config: _ticket(config, uuid="0b7e2a4c-0000-4d7a-9a51-0c3b6f1e2d44"),
     "issued for another domain"),
    (lambda config: "0" * 64, "unknown to this host"),
    (lambda config: "../../ticket", "a malformed ncdma ticket"),
])
def test_expired_foreign_and_forged_tickets_are_refused(config, installed_hook, make,
                                                        words) -> None:
    ticketed = with_ticket(domain_xml("migration='refuse'"), make(config)).encode()
    assert words in _refused_plainly(run_hook(installed_hook, "migrate", ticketed), "refuse")


@pytest.mark.parametrize("policy, allowed", [
    ("migration='any'", True), ("migration='skip' bars='hostmem'", True),
    ("migration='skip'", False), ("migration='copy'", False), ("migration='refuse'", False)])
def test_restore_is_allowed_exactly_where_a_plain_migration_is(config, installed_hook, policy,
                                                               allowed) -> None:
    done = run_hook(installed_hook, "restore", domain_xml(policy))
    if allowed:
        assert (done.returncode, done.stderr) == (0, b"")
        return
    line = done.stderr.decode()
    assert done.returncode == 1 and line.startswith("ncdma: refusing to restore vm1: its policy")
    assert "virsh start --force-boot vm1" in line and line.count("\n") == 1
