"""Method vm's preload library inside QEMU 10.0 (lab host h1, Debian 13), as with QEMU 7.2
on this machine (tests/host/test_preload.py): the library, built here, interposes QEMU
10.0's ioctl() and acts right after KVM_CREATE_VM. The lab's kernel (this machine's) does
not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT, so the disable fails: required, QEMU exits
before the guest runs; not required, the guest runs and the report says why."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator

import pytest

from ncdma.kvm.abi import KVM_X86_QUIRK_IGNORE_GUEST_PAT
from lab import Lab
from lab.guests.build import build_guest, exit_code
from lab.preload import LIBRARY, build_preload

pytestmark = pytest.mark.lab


@pytest.fixture
def inside(lab: Lab) -> Iterator[str]:
    """A directory in h1's /tmp holding the library and the portio guest (path inside h1)."""
    name = f"/tmp/ncdma-preload-{uuid.uuid4().hex[:8]}"
    outside = lab.host("h1").root_path / name.lstrip("/")
    build_preload(outside)
    build_guest("portio", outside, COUNT=10).rename(outside / "portio.bin")
    yield name
    shutil.rmtree(outside, ignore_errors=True)


def _run(lab: Lab, inside: str, require: str) -> tuple[int, list[str], dict[str, object]]:
    h1 = lab.host("h1")
    done = h1.run(["env", f"LD_PRELOAD={inside}/{LIBRARY}", f"NCDMA_PAT_REQUIRE={require}",
                   f"NCDMA_PAT_REPORT={inside}/guest-pat.json", "NCDMA_PAT_DOMAIN=vm1",
                   "qemu-system-x86_64", "-machine", "pc,accel=kvm", "-m", "16",
                   "-display", "none", "-nodefaults",
                   "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                   "-bios", f"{inside}/portio.bin"], timeout=60)
    report = json.loads((h1.root_path / inside.lstrip("/") / "guest-pat.json").read_text())
    return done.returncode, [line for line in done.stderr.splitlines()
                             if line.startswith("ncdma:")], report


def test_qemu_10_runs_the_library_after_kvm_create_vm(lab: Lab, inside: str) -> None:
    version = lab.host("h1").run(["qemu-system-x86_64", "--version"]).stdout
    assert version.startswith("QEMU emulator version 10.0"), version
    status, lines, report = _run(lab, inside, "1")
    assert status == 1 and len(lines) == 1, lines
    assert "guest PAT cannot be honored for the whole VM" in lines[0]
    assert report["honored"] is False
    assert not int(str(report["quirks2_mask"])) & KVM_X86_QUIRK_IGNORE_GUEST_PAT
    status, lines, report = _run(lab, inside, "0")
    assert status == exit_code("STATUS_PORTIO_DONE") and len(lines) == 1, lines
    assert "guest PAT is NOT honored" in lines[0] and report["honored"] is False

