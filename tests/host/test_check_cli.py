"""`ncdma check` as an operator runs it, on this machine and on the odd hosts it can become."""

from __future__ import annotations

import json
import os
import re

from tests.host.conftest import run_ncdma


def _vendor() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        return re.search(r"^vendor_id\s*:\s*(\S+)", cpuinfo.read(), re.M).group(1)


def test_this_machine_is_audit_only_because_of_einval_and_its_cpu() -> None:
    done = run_ncdma(["check", "--json"])
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["schema_version"] == 1
    assert report["mode"] == "audit" and report["enforce_possible"] is False
    assert any("rejects KVM_MEM_NON_COHERENT_DMA (0x8)" in r and "EINVAL" in r
               for r in report["reasons"])
    assert report["host"]["cpu"]["vendor"] == _vendor()
    if _vendor() != "GenuineIntel":
        assert any(_vendor() in r for r in report["reasons"])
    assert report["host"]["kernel"] == os.uname().release
    assert report["host"]["seccomp_user_notif"] is True


def test_human_output_names_the_mode_and_the_reasons() -> None:
    done = run_ncdma(["check"])
    assert done.returncode == 1
    assert "mode: audit only" in done.stdout
    assert "KVM_SET_USER_MEMORY_REGION EINVAL" in done.stdout
    assert done.stderr == ""


def test_flag_value_is_configurable() -> None:
    done = run_ncdma(["check", "--json", "--flag", "0x40"])
    report = json.loads(done.stdout)
    assert report["host"]["probe"]["flag"] == 0x40
    assert any("(0x40)" in r for r in report["reasons"])


def test_bad_flag_value_is_a_usage_error_without_traceback() -> None:
    done = run_ncdma(["check", "--flag", "banana"])
    assert done.returncode == 2
    assert "flag value 'banana' is not a number" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_host_without_dev_kvm_has_no_mode() -> None:
    # A private mount namespace with an empty /dev: a host whose KVM module is not loaded.
    done = run_ncdma(["check", "--json"],
                     prefix=["unshare", "-m", "--propagation", "private", "sh", "-c",
                             'mount -t tmpfs none /dev && exec "$@"', "sh"])
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == "none"
    assert report["host"]["probe"] is None
    assert "/dev/kvm does not exist" in report["reasons"][0]
    assert "Traceback" not in done.stderr


def test_permission_denied_names_the_fix(tmp_path) -> None:
    node = tmp_path / "kvm"
    os.mknod(node, 0o600 | 0o020000, os.stat("/dev/kvm").st_rdev)
    os.chown(node, 65534, 65534)
    # root without capabilities: the device's owner is nobody, so the open is refused
    done = run_ncdma(["check", "--device", str(node)],
                     prefix=["setpriv", "--inh-caps=-all", "--bounding-set=-all"])
    assert done.returncode == 1
    assert "mode: none" in done.stdout
    assert f"permission denied opening {node}" in done.stdout and "run as root" in done.stdout
