"""The playbook deploys ncdma on both lab hosts over SSH, and what it deploys works: an
opted-in VM starts guarded on h1 and migrates live to h2. Reruns change nothing, a failed
preflight changes no file, absent removes everything, present again is clean.

Every test runs in both modes the role can deploy on the lab (the `mode` fixture): audit, and
enforce with the lab's stand-in flag, where the guard sets the flag on the vram slot on h1
and on h2 after the migration."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from lab import Lab
from lab.host import Host
from lab.playbook import Run
from tests.integration.ansible.conftest import Mode, host_files, remove_everywhere
from tests.integration.ncdma.conftest import OptedIn

pytestmark = pytest.mark.lab

NCDMA = "/opt/ncdma/bin/ncdma"
# What the role installs on a host (with the default variables) and absent removes.
INSTALLED = ("etc/libvirt/hooks/qemu.d/50-ncdma", "usr/local/libexec/ncdma/ncdma-qemu",
             "opt/ncdma/bin/python3", "etc/ncdma/ncdma.conf", "run/ncdma/guard.sock")


@pytest.fixture(scope="module")
def first_run(clean_lab: Lab, mode: Mode) -> Run:
    """The playbook's first run in ``mode`` on both hosts, without ncdma."""
    remove_everywhere()
    return mode.deploy()


def _installed(host: Host) -> list[str]:
    """Which of INSTALLED are on ``host`` (links are not followed: their targets are the
    host's paths, not this machine's)."""
    return [path for path in INSTALLED if os.path.lexists(host.root_path / path)]


def _guard_service(host: Host) -> list[str]:
    """Pid of the guard service the role started (its pid file's, if that process runs
    `ncdma guardd`: the guards it forks for VMs have the same command line)."""
    return host.run(["pgrep", "-F", "/run/ncdma/guardd.pid", "-f", "-x",
                     f"/opt/ncdma/bin/python3 {NCDMA} guardd"]).stdout.split()


def _guard_processes(host: Host) -> list[str]:
    """Pids of every process running `ncdma guardd`: the service and the guards."""
    return host.run(["pgrep", "-f", "-x", f"/opt/ncdma/bin/python3 {NCDMA} guardd"]
                    ).stdout.split()


def _status(host: Host, domain: str, timeout: float = 20) -> dict:
    """`ncdma status --json` once the guard has journaled the vram slot."""
    deadline = time.monotonic() + timeout
    while True:
        done = host.run([NCDMA, "status", domain, "--json"], timeout=60)
        status = json.loads(done.stdout) if done.stdout.startswith("{") else {}
        slots = (status.get("journal") or {}).get("slots", [])
        if any(slot["decision"] == "tag" for slot in slots) or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def test_first_run_deploys_both_hosts(first_run: Run, clean_lab: Lab, mode: Mode) -> None:
    assert set(first_run.recap) == {"h1", "h2"}, first_run.describe()
    assert all(counters["changed"] > 0 for counters in first_run.recap.values())
    assert first_run.output.count(mode.says) == 2, first_run.describe()
    for host in clean_lab.hosts.values():
        assert _installed(host) == list(INSTALLED), host.name
        assert (host.root_path / INSTALLED[0]).read_text().startswith(
            "#!/opt/ncdma/bin/python3\n")
        assert len(_guard_service(host)) == 1


@pytest.fixture
def vm(clean_lab: Lab, first_run: Run) -> Iterator[OptedIn]:
    domain = OptedIn(clean_lab, "t-ansible-deployed")
    domain.remove()
    yield domain
    domain.remove()


def _vram_flag_set(status: dict) -> bool:
    [vram] = [slot for slot in status["journal"]["slots"] if slot["decision"] == "tag"]
    return bool(vram["flag_set"])


def test_opted_in_vm_starts_guarded_on_h1_and_migrates_live_to_h2(vm: OptedIn,
                                                                    mode: Mode) -> None:
    h1, h2 = vm.lab.host("h1"), vm.lab.host("h2")
    vm.define("h1")
    vm.enable("h1", "--bars", "vram", "--migration", "any")  # migrated by plain virsh below
    h1.virsh("start", vm.name)
    status = _status(h1, vm.name)
    assert status["guard"]["alive"] and status["plan"]["mode"] == mode.name, status
    assert _vram_flag_set(status) is mode.enforce, status
    # new settings restart the guard service; the running VM's guard lives on
    service = _guard_service(h1)
    assert mode.deploy("--limit", "h1", "-e", "ncdma_hook_timeout=11").changed()["h1"] > 0
    assert _guard_service(h1) not in ([], service)
    assert _status(h1, vm.name)["guard"] == status["guard"]
    mode.deploy("--limit", "h1")
    h1.virsh("migrate", "--live", vm.name, f"qemu+ssh://{h2.address}/system")
    assert vm.state("h2") == "running" and vm.state("h1") != "running"
    status = _status(h2, vm.name)
    assert status["guard"]["alive"] and status["plan"]["mode"] == mode.name, status
    assert _vram_flag_set(status) is mode.enforce, status


def test_second_run_changes_nothing(first_run: Run, mode: Mode) -> None:
    again = mode.deploy()
    assert again.changed() == {"h1": 0, "h2": 0}, again.describe()


def test_check_diff_run_reports_no_changes(first_run: Run, mode: Mode) -> None:
    check = mode.deploy("--check", "--diff")
    assert check.changed() == {"h1": 0, "h2": 0}, check.describe()
    assert "--- before" not in check.output, check.describe()


def test_failed_preflight_on_a_deployed_host_changes_nothing(clean_lab: Lab, first_run: Run,
                                                           mode: Mode) -> None:
    """The stand-in never makes the real flag's verdict enforce: required enforce fails in
    both modes."""
    h1 = clean_lab.host("h1")
    before = host_files(h1)
    done = mode.playbook("--limit", "h1", "-e", "ncdma_require_enforce=true")
    assert done.returncode != 0 and done.recap["h1"]["failed"] == 1, done.describe()
    assert "ncdma_require_enforce is true" in done.output
    assert host_files(h1) == before


def test_absent_removes_everything_and_present_again_is_clean(clean_lab: Lab, first_run: Run,
                                                             mode: Mode) -> None:
    absent = mode.deploy("-e", "ncdma_state=absent")
    assert all(changed > 0 for changed in absent.changed().values()), absent.describe()
    assert "Reload libvirt so that it rereads its hooks" in absent.output
    for host in clean_lab.hosts.values():
        assert _installed(host) == [], host.name
        assert not (host.root_path / "usr/local/libexec/ncdma").exists()
        assert not _guard_processes(host) and host.libvirt_answers()
    assert mode.deploy("-e", "ncdma_state=absent").changed() == {"h1": 0, "h2": 0}
    present = mode.deploy()
    assert present.output.count(mode.says) == 2, present.describe()
    assert mode.deploy().changed() == {"h1": 0, "h2": 0}
    for host in clean_lab.hosts.values():
        assert len(_guard_service(host)) == 1
