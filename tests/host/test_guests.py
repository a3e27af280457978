"""The firmware-only guests of lab/guests under this machine's QEMU 7.2 and KVM.

A Linux guest does not boot under this machine's KVM (FACTS.md), so these tiny guests drive the
real memslot paths: QEMU's `kvm_set_user_memory` trace shows every memslot ioctl it makes.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from ncdma.kvm import abi
from lab.guests.build import (GUESTS, IMAGE_SIZE, RESET_VECTOR, build_guest, exit_code,
    reset_vector_jump)
from lab.guests.trace import MemslotEvent, memslot_events

QEMU = "/usr/bin/qemu-system-x86_64"
MACHINE = (QEMU, "-machine", "pc,accel=kvm", "-display", "none", "-nodefaults",
           "-device", "isa-debug-exit,iobase=0x501,iosize=2")
RAM_MIB = 128
VIRTIO_VGA = ("-device", "virtio-vga")
VRAM_SIZE = 0x800000  # virtio-vga BAR 0, vga.vram
TOGGLE_BAR = 0xE0000000  # bartoggle's default BAR_ADDR, above RAM
HOSTILE_BAR = 0x04000000  # hostile's default BAR_ADDR, inside the 128 MiB of RAM

Build = Callable[..., Path]


@dataclass(frozen=True)
class QemuRun:
    returncode: int
    seconds: float
    events: list[MemslotEvent]


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """build(name, **symbols) -> image path: assembles the guest from source into a session dir."""
    out_dir = tmp_path_factory.mktemp("guests")
    return lambda name, **symbols: build_guest(name, out_dir, **symbols)


def qemu_command(image: Path, *args: str, ram_mib: int = RAM_MIB) -> list[str]:
    return [*MACHINE, "-m", str(ram_mib), *args, "-bios", str(image)]


def run_guest(image: Path, *args: str, ram_mib: int = RAM_MIB, timeout: float = 60) -> QemuRun:
    """Run QEMU on IMAGE until the guest exits through isa-debug-exit, tracing memslot ioctls."""
    log = image.with_suffix(".trace")
    start = time.monotonic()
    done = subprocess.run([*qemu_command(image, *args, ram_mib=ram_mib),
                           "-trace", "kvm_set_user_memory", "-D", str(log)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - start
    # Every guest status is >= 0x10, so exit status 1 is QEMU's own failure.
    assert done.returncode != 1, f"QEMU failed: {done.stderr}"
    return QemuRun(done.returncode, seconds, memslot_events(log.read_text()))


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n    {line}")


@pytest.mark.parametrize("name", GUESTS)
def test_guest_builds_to_a_64k_image_with_a_far_jump_at_the_reset_vector(build: Build,
                                                                         name: str) -> None:
    data = build(name).read_bytes()
    assert len(data) == IMAGE_SIZE
    entry = reset_vector_jump(data)
    assert entry is not None and entry < RESET_VECTOR


def test_portio_exits_with_its_status(build: Build) -> None:
    run = run_guest(build("portio", COUNT=1000), timeout=30)
    assert run.returncode == exit_code("STATUS_PORTIO_DONE")


def test_ramtouch_writes_and_reads_back_its_ram_pages(build: Build) -> None:
    run = run_guest(build("ramtouch", PAGES=16), timeout=30)
    assert run.returncode == exit_code("STATUS_RAMTOUCH_DONE")


def test_portio_100000_exits_measured(build: Build, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_guest(build("portio", COUNT=100000), timeout=120)
    assert run.returncode == exit_code("STATUS_PORTIO_DONE")
    report(capsys, f"portio COUNT=100000: QEMU ran {run.seconds:.2f} s")


def test_bartoggle_creates_and_deletes_the_vram_memslot_each_time(
        build: Build, capsys: pytest.CaptureFixture[str]) -> None:
    toggles = 100
    run = run_guest(build("bartoggle", TOGGLES=toggles), *VIRTIO_VGA)
    assert run.returncode == exit_code("STATUS_TOGGLE_DONE")
    vram = [event for event in run.events if event.gpa == TOGGLE_BAR]
    assert [event.deletes for event in vram] == [False, True] * toggles
    assert all(event.ret == 0 and event.slot == vram[0].slot for event in vram)
    created = vram[::2]
    # QEMU tracks VGA updates, so the vram slot arrives with dirty logging on (FACTS.md).
    assert all(event.size == VRAM_SIZE and event.flags & abi.KVM_MEM_LOG_DIRTY_PAGES
               for event in created)
    report(capsys, f"bartoggle TOGGLES={toggles}: QEMU ran {run.seconds:.2f} s, "
                   f"{len(vram)} vram memslot events of {len(run.events)}")


def test_hostile_vram_over_ram_changes_no_memslot(build: Build) -> None:
    # The baseline puts the BAR at the same address but never turns memory decode on.
    baseline = run_guest(build("bartoggle", TOGGLES=0, BAR_ADDR=HOSTILE_BAR), *VIRTIO_VGA)
    hostile = run_guest(build("hostile", BAR_ADDR=HOSTILE_BAR), *VIRTIO_VGA)
    assert baseline.returncode == exit_code("STATUS_TOGGLE_DONE")
    assert hostile.returncode == exit_code("STATUS_HOSTILE_DONE")
    # Turning decode on over RAM is invisible to KVM: the same memslots, no vram slot.
    assert hostile.events == baseline.events
    assert not [event for event in hostile.events if event.size == VRAM_SIZE]


def test_hostile_vram_straddling_the_end_of_ram_gets_a_slot_for_its_visible_half(
        build: Build) -> None:
    ram_end = (RAM_MIB + 4) << 20  # RAM ends 4 MiB into the BAR
    run = run_guest(build("hostile", BAR_ADDR=RAM_MIB << 20), *VIRTIO_VGA, ram_mib=RAM_MIB + 4)
    assert run.returncode == exit_code("STATUS_HOSTILE_DONE")
    # A vram memslot can be part of the BAR: the part above RAM, at its own GPA and size.
    # (vram is the only slot QEMU logs dirty pages of here.)
    vram = [event for event in run.events if event.flags & abi.KVM_MEM_LOG_DIRTY_PAGES]
    assert [(event.gpa, event.size, event.deletes) for event in vram] == [
        (ram_end, VRAM_SIZE - (4 << 20), False)]


@pytest.mark.parametrize(("name", "symbols", "devices", "status"), [
    ("bartoggle", {}, (), "STATUS_NOT_FOUND"),
    ("hostile", {}, (), "STATUS_NOT_FOUND"),
    ("hostile", {"BAR_ADDR": HOSTILE_BAR + 0x100000}, VIRTIO_VGA, "STATUS_BAD_BAR"),
])
def test_guest_failure_statuses(build: Build, name: str, symbols: dict[str, int],
                                devices: tuple[str, ...], status: str) -> None:
    # No virtio-vga on the bus; a BAR address the 8 MiB BAR cannot take (not 8 MiB aligned).
    assert run_guest(build(name, **symbols), *devices).returncode == exit_code(status)


def test_hostile_stay_variant_leaves_ram_in_place(build: Build, tmp_path: Path) -> None:
    image = build("hostile", BAR_ADDR=HOSTILE_BAR, STAY=1)
    socket = tmp_path / "qmp.sock"
    qmp = QEMUMonitorProtocol(str(socket), server=True)  # QEMU connects to the test
    qemu = subprocess.Popen([*qemu_command(image, *VIRTIO_VGA), "-qmp", f"unix:{socket}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        qmp.accept(timeout=20)
        deadline = time.monotonic() + 20
        while vram_bar_address(qmp) != HOSTILE_BAR:
            assert time.monotonic() < deadline, "the guest never mapped its vram BAR"
            time.sleep(0.05)
        mtree = qmp.cmd("human-monitor-command", **{"command-line": "info mtree -f"})
        flat = system_flatview(mtree)
        # PCI memory sits below RAM in QEMU's pc machine: RAM keeps the range, vram is hidden.
        assert re.search(r"^ *0*100000-0*7ffffff \(prio 0, ram\): pc\.ram ", flat, re.MULTILINE)
        assert "vga.vram" not in flat
        assert qemu.poll() is None, "the stay variant should halt, not exit"
    finally:
        qemu.kill()
        qemu.wait()
        with contextlib.suppress(EOFError):  # qemu.qmp re-raises QEMU's hang-up on close
            qmp.close()


def vram_bar_address(qmp: QEMUMonitorProtocol) -> int:
    """The address of virtio-vga's BAR 0 from query-pci: -1 while memory decode does not map it."""
    for bus in qmp.cmd("query-pci"):
        for device in bus["devices"]:
            if (device["id"]["vendor"], device["id"]["device"]) == (0x1AF4, 0x1050):
                return next(region["address"] for region in device["regions"] if region["bar"] == 0)
    raise AssertionError("virtio-vga is not on the PCI bus")


def system_flatview(mtree: str) -> str:
    """The `info mtree -f` section of the flat view rooted at the system memory region."""
    for section in mtree.split("FlatView #"):
        if "Root memory region: system" in section:
            return section
    raise AssertionError(f"no system flat view in:\n{mtree}")
