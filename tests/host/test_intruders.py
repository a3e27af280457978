"""A hostile guest moves memory that is not the GPU's into the vram BAR's window: nothing but
the selected RAMBlock may be tagged (DESIGN.md section 3; issue 14).

Each case runs the `intruder` guest on this machine's QEMU under KVM, guarded in audit mode
(the journal records what the guard selects; enforce would stop QEMU on this kernel's EINVAL).
The guest maps vram, waits for the guard to learn the layout, then puts another device's
memory into vram's window: QEMU maps it over vram there, a memslot of that device's own memory
inside the window (and splits vram's slot around it). Every case creates memslots; the test
fails if the intruder's slot never appears.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ncdma.model.verdict import Mode
from lab.guests.build import build_guest
from lab.guarded import GuardedHost
from tests.host.test_guard import ISA_EXIT

ROM_SIZE = 0x10000
SHM_SIZE = 0x100000
PCI_TESTDEV = 0x00051B36
IVSHMEM = 0x11101AF4
VRAM_WINDOW = 0xE0000000


@dataclass(frozen=True)
class Intruder:
    """What the guest moves into the window, with which QEMU devices."""

    symbols: dict[str, int]
    at: int
    size: int
    ram_mib: int = 128

    def devices(self, scratch: Path) -> list[str]:
        if self.symbols.get("INTRUDER_ID") == IVSHMEM:
            return ["-object", f"memory-backend-ram,id=shm,size={SHM_SIZE},share=on",
                    "-device", "ivshmem-plain,memdev=shm"]
        rom = scratch / "rom.bin"
        rom.write_bytes(b"\x55\xaa" + bytes(range(256)) * (ROM_SIZE // 256 - 1) + bytes(254))
        return ["-device", f"pci-testdev,romfile={rom}"]


CASES = {
    "an option ROM": Intruder({}, VRAM_WINDOW + 0x400000, ROM_SIZE),
    "an option ROM moved in and out 200 times": Intruder({"MOVES": 200}, VRAM_WINDOW + 0x400000,
                                                         ROM_SIZE),
    "RAM (ivshmem's BAR 2)": Intruder({"INTRUDER_ID": IVSHMEM, "INTRUDER_REG": 0x18,
                                        "INTRUDER_64": 1, "MOVES": 50},
                                       VRAM_WINDOW + 0x400000, SHM_SIZE),
    "an option ROM in vram straddling the end of RAM": Intruder(
        {"BAR_ADDR": 0x08000000, "INTRUDER_AT": 0x08600000}, 0x08600000, ROM_SIZE, ram_mib=132),
}


def _settled_journal(host: GuardedHost, domain: str, intruder: Intruder) -> dict[str, Any]:
    """The journal once it holds the intruder's slot at its last place and stopped changing."""
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        try:
            text = (host.settings.domain_dir(domain) / "slots.json").read_text()
        except OSError:
            text = None
        if text is not None and text == last:
            journal: dict[str, Any] = json.loads(text)
            if any(slot["gpa"] == intruder.at for slot in journal["slots"]):
                return journal
        last = text
        time.sleep(1.0)
    pytest.fail(f"no memslot at {intruder.at:#x} appeared: the guest did not move its intruder "
                f"(journal: {last})")


@pytest.mark.parametrize("case", CASES)
def test_memory_moved_into_the_vram_window_is_never_tagged(host: GuardedHost, tmp_path: Path,
                                                           case: str) -> None:
    intruder = CASES[case]
    image = build_guest("intruder", tmp_path, **intruder.symbols)
    domain = host.plan(Mode.AUDIT)
    qemu = subprocess.Popen(host.wrapper_argv(domain, "-m", str(intruder.ram_mib), "-device",
                                              "virtio-vga,id=video0", *intruder.devices(tmp_path),
                                              *ISA_EXIT, "-bios", str(image)),
                            env=host.env, stderr=subprocess.PIPE, text=True)
    try:
        journal = _settled_journal(host, domain, intruder)
        assert qemu.poll() is None, qemu.stderr.read() if qemu.stderr else ""
    finally:
        qemu.kill()
        qemu.wait()
    [alien] = [slot for slot in journal["slots"] if slot["gpa"] == intruder.at]
    assert alien["size"] == intruder.size
    selected = [slot for slot in journal["slots"] if slot["decision"] in ("tag", "keep")]
    wrong = [slot for slot in selected
             if slot["gpa"] < intruder.at + intruder.size and intruder.at < slot["gpa"] + slot["size"]
             or slot["hva"] == alien["hva"]]
    assert not wrong, f"tagged memory that is not vram: {wrong}"
    # guest RAM (below 4 GiB here) is never tagged, also where the vram BAR overlaps its end
    ram_end = intruder.ram_mib << 20
    on_ram = [slot for slot in selected if slot["gpa"] < ram_end]
    assert not on_ram, f"tagged slots over guest RAM: {on_ram}"
    if intruder.ram_mib << 20 > intruder.symbols.get("BAR_ADDR", VRAM_WINDOW):
        # the BAR straddles the end of RAM: only its part above RAM became a vram slot
        vram = [slot for slot in selected if slot["gpa"] == ram_end]
        assert vram, f"no vram slot above RAM at {ram_end:#x}: {journal['slots']}"
