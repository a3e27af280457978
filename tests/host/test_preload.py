"""Method vm's preload library (preload/ncdma-pat.c) in real QEMU 7.2 under this machine's
KVM, alone and through the wrapper and guard service.

This machine's kernel does not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT (its quirks2 mask lacks
bit 9: no VMX, no self-snoop), so the library's disable fails here: with require the VM
does not start, with one line; without, it runs and the report says why. The disable
succeeding, seen on the EPT entries, is the Intel lab's (tests/intel).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ncdma.kvm.abi import KVM_X86_QUIRK_IGNORE_GUEST_PAT
from ncdma.kvm.probe import probe_kernel
from ncdma.model.policy import Method
from ncdma.model.verdict import Mode
from lab.guarded import QEMU, GuardedHost
from lab.guests.build import build_guest, exit_code
from lab.preload import build_preload

ISA_EXIT = ("-device", "isa-debug-exit,iobase=0x501,iosize=2")
PORTIO_DONE = exit_code("STATUS_PORTIO_DONE")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return build_preload(tmp_path_factory.mktemp("preload"))


@pytest.fixture(scope="module")
def portio(tmp_path_factory) -> Path:
    return build_guest("portio", tmp_path_factory.mktemp("guest"), COUNT=100)


@pytest.fixture(scope="module")
def mask() -> int:
    """This kernel's quirks2 mask: the tests below are about a kernel without bit 9."""
    found = probe_kernel().quirks2_mask
    assert not found & KVM_X86_QUIRK_IGNORE_GUEST_PAT, \
        f"this kernel offers the quirk (mask {found:#x}): these tests expect one that does not"
    return found


def _qemu(library: Path, portio: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    argv = [QEMU, "-machine", "pc,accel=kvm", "-display", "none", "-nodefaults", "-m", "16",
            *ISA_EXIT, "-bios", str(portio)]
    return subprocess.run(argv, env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library),
                                     **environment},
                          capture_output=True, text=True, timeout=60, check=False)


def _ncdma_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ncdma:")]


def test_required_where_the_quirk_is_not_offered_qemu_does_not_start(
        library, portio, mask, tmp_path) -> None:
    report = tmp_path / "guest-pat.json"
    done = _qemu(library, portio, NCDMA_PAT_REQUIRE="1", NCDMA_PAT_REPORT=str(report),
                 NCDMA_PAT_DOMAIN="vm1")
    assert done.returncode == 1, done.stderr  # not the guest's 33: no vCPU ever ran
    [line] = _ncdma_lines(done.stderr)
    assert line.startswith("ncdma: vm1: guest PAT cannot be honored for the whole VM: the "
                           "kernel does not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT (0x200)")
    assert f"(mask {mask:#x})" in line and "require='yes'): QEMU stops" in line
    state = json.loads(report.read_text())
    assert (state["honored"], state["quirks2_mask"], state["errno"]) == (False, mask, 0)


def test_not_required_qemu_runs_the_guest_and_the_report_says_why(
        library, portio, mask, tmp_path) -> None:
    report = tmp_path / "guest-pat.json"
    done = _qemu(library, portio, NCDMA_PAT_REQUIRE="0", NCDMA_PAT_REPORT=str(report),
                 NCDMA_PAT_DOMAIN="vm1")
    assert done.returncode == PORTIO_DONE, done.stderr
    [line] = _ncdma_lines(done.stderr)
    assert "guest PAT is NOT honored" in line and "require='no': running on" in line
    state = json.loads(report.read_text())
    assert not state["honored"] and "does not offer" in state["reason"]


def test_without_its_environment_the_library_does_nothing(library, portio, tmp_path) -> None:
    done = _qemu(library, portio)
    assert done.returncode == PORTIO_DONE and not _ncdma_lines(done.stderr)


def _wrapped(host: GuardedHost, library: Path | None, portio: Path, require: bool,
             mode: Mode = Mode.ENFORCE) -> tuple[str, subprocess.CompletedProcess[str]]:
    host.use_preload(library or host.root / "missing.so")
    domain = host.plan(mode, require=require, method=Method.VM)
    done = subprocess.run(host.wrapper_argv(domain, "-m", "16", "-device", "virtio-vga",
                                            *ISA_EXIT, "-bios", str(portio)),
                          env=host.env, capture_output=True, text=True, timeout=60)
    return domain, done


def _status(host: GuardedHost, domain: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ncdma", "status", domain], env=host.env,
                          capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def test_wrapped_not_required_journal_and_status_say_guest_pat_is_not_honored(
        host, library, portio, mask) -> None:
    domain, done = _wrapped(host, library, portio, require=False)
    assert done.returncode == PORTIO_DONE, done.stderr
    journal = host.final_journal(domain)
    state = journal["guest_pat"]
    assert (state["honored"], state["quirks2_mask"]) == (False, mask)
    assert "does not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT" in state["reason"]
    assert journal["slots"] and not any(slot["flag_set"] for slot in journal["slots"])
    assert "guest PAT is NOT honored" in host.log()
    status = _status(host, domain)
    assert "method: vm (requested vm)" in status
    assert "guest PAT: NOT honored: the kernel does not offer" in status


def test_wrapped_required_qemu_does_not_start_and_says_why_in_one_line(
        host, library, portio, mask) -> None:
    _, done = _wrapped(host, library, portio, require=True)
    assert done.returncode == 1
    [line] = _ncdma_lines(done.stderr)
    assert "guest PAT cannot be honored for the whole VM" in line and f"{mask:#x}" in line


def test_wrapped_without_the_library_required_refuses_before_qemu(host, portio) -> None:
    _, done = _wrapped(host, None, portio, require=True)
    assert done.returncode == 1
    assert done.stderr.startswith("ncdma-qemu: QEMU not started: method vm needs ncdma's "
                                  "preload library")


def test_wrapped_without_the_library_unrequired_runs_and_status_says_so(host, portio) -> None:
    domain, done = _wrapped(host, None, portio, require=False)
    assert done.returncode == PORTIO_DONE, done.stderr
    assert "guest PAT is NOT honored" in done.stderr
    assert "made no report" in host.final_journal(domain)["guest_pat"]["reason"]
    assert "guest PAT: NOT honored: ncdma's preload library made no report" in \
        _status(host, domain)


def test_method_vm_in_audit_loads_no_library(host, library, portio, tmp_path) -> None:
    domain, done = _wrapped(host, library, portio, require=True, mode=Mode.AUDIT)
    assert done.returncode == PORTIO_DONE and not _ncdma_lines(done.stderr)
    assert host.final_journal(domain)["guest_pat"] is None
    assert "guest PAT: NOT honored (mode audit" in _status(host, domain)
