"""The guard's journal tells a successor the truth (issue 13): a guard killed right after it
answered an ioctl, at the fault point the test arms (plugin/ncdma/guard/faults.py).

QEMU 7.2 under KVM runs bartoggle with HOLD: it maps vram, waits, maps it afresh (the guard
tags this slot), and with RELEASE waits again and deletes it. The test arms the fault for the
last call the guest makes, so nothing overwrites what the successor took over with: the
journal on disk must say what the kernel was asked, whatever moment the guard died.
"""

from __future__ import annotations

import time
from pathlib import Path

from ncdma.model.verdict import Mode
from lab.gated import GatedQemu
from lab.guarded import GuardedHost

HOLD_S = 3


def _taken_over(host: GuardedHost, qemu: GatedQemu) -> None:
    deadline = time.monotonic() + 30
    while "after taking over" not in host.log():
        assert qemu.process.poll() is None, qemu.stderr()
        assert time.monotonic() < deadline, "the fault never fired, or no guard took over"
        time.sleep(0.1)


def test_killed_after_answering_a_tag(faulty_host: GuardedHost, tmp_path: Path) -> None:
    qemu = GatedQemu(faulty_host, faulty_host.plan(Mode.AUDIT), tmp_path, TOGGLES=0, GO=0,
                     HOLD=HOLD_S)
    try:
        qemu.wait_guarded()  # the first mapping (before the guard knew the BAR)
        (faulty_host.root / "fault").write_text("after-answer:tag")
        _taken_over(faulty_host, qemu)  # the fresh mapping was tagged, answered, guard killed
        slot = qemu.vram_slot()
        assert slot is not None and slot["decision"] == "tag", \
            f"the successor took over a journal without the tagged slot: {slot}"
    finally:
        qemu.kill()


def test_killed_after_answering_the_delete_of_a_tagged_slot(faulty_host: GuardedHost,
                                                            tmp_path: Path) -> None:
    qemu = GatedQemu(faulty_host, faulty_host.plan(Mode.AUDIT), tmp_path, TOGGLES=0, GO=0,
                     HOLD=HOLD_S, RELEASE=1)
    try:
        qemu.wait_guarded("tag")  # the fresh mapping, tagged
        (faulty_host.root / "fault").write_text("after-answer:untag")
        _taken_over(faulty_host, qemu)  # its delete was answered, guard killed
        assert qemu.vram_slot() is None, \
            "the successor took over a journal that still holds the deleted tagged slot"
    finally:
        qemu.kill()
