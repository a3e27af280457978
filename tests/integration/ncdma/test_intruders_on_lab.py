"""A hostile guest on the lab (QEMU 10.0, through libvirt) moves an option ROM into a GPU BAR's
window: nothing but the selected memory may be tagged (issue 14; tests/host/test_intruders.py
does the same on this machine's QEMU 7.2).

The domain boots the `intruder` guest as its firmware (``<loader type='rom'>``, QEMU's -bios)
with a pci-testdev carrying a 64 KiB option ROM. The guest maps vram and the 64 MiB hostmem BAR,
waits for the guard to learn the layout, then moves the ROM into one of the windows (and out
and back MOVES times): QEMU gives the ROM a memslot of its own inside the window.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lab.guests.build import build_guest
from tests.integration.ncdma.conftest import LAB_XML, OptedIn

pytestmark = pytest.mark.lab

VRAM_AT = 0xE0000000
HOSTMEM_AT = 0xC0000000  # 64 MiB aligned, in the PCI hole above 128 MiB of RAM
ROM_SIZE = 0x10000
IN_HOST = "/var/lib/ncdma-test"  # where the lab host sees the images
CASES = {
    "hostmem window": {"INTRUDER_AT": HOSTMEM_AT + 0x1000000},
    "hostmem window, 200 fast moves": {"INTRUDER_AT": HOSTMEM_AT + 0x1000000, "MOVES": 200},
    "vram window": {"INTRUDER_AT": VRAM_AT + 0x400000},
}


def _domain_xml(image: str, rom: str) -> str:
    return LAB_XML.replace(
        "<type arch='x86_64' machine='pc'>hvm</type>",
        f"<type arch='x86_64' machine='pc'>hvm</type><loader type='rom'>{image}</loader>",
    ).replace(
        "</domain>",
        "<qemu:commandline><qemu:arg value='-device'/>"
        f"<qemu:arg value='pci-testdev,romfile={rom},bus=pci.0,addr=0x10'/>"
        "</qemu:commandline></domain>")


def _journal_with(opted_in: OptedIn, gpa: int) -> dict[str, Any]:
    """The journal once it holds a slot at ``gpa`` and stopped changing."""
    last = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = opted_in.ncdma("h1", "status", opted_in.name, "--json")
        journal = json.loads(done.stdout).get("journal") if done.stdout else None
        if journal and journal == last and any(s["gpa"] == gpa for s in journal["slots"]):
            return dict(journal)
        last = journal
        time.sleep(1.0)
    pytest.fail(f"no memslot at {gpa:#x} appeared (journal: {last})")


@pytest.mark.parametrize("case", CASES)
def test_an_option_rom_moved_into_a_gpu_window_is_never_tagged(opted_in: OptedIn, tmp_path: Path,
                                                               case: str) -> None:
    symbols = {"BAR_ADDR": VRAM_AT, "HOSTMEM_ADDR": HOSTMEM_AT, **CASES[case]}
    at = symbols["INTRUDER_AT"]
    host = opted_in.lab.host("h1")
    images = host.root_path / IN_HOST.lstrip("/")
    images.mkdir(parents=True, exist_ok=True)
    image = build_guest("intruder", tmp_path, **symbols)
    (images / image.name).write_bytes(image.read_bytes())
    (images / "rom.bin").write_bytes(b"\x55\xaa" + bytes(range(256)) * (ROM_SIZE // 256 - 1)
                                     + bytes(254))
    opted_in.define("h1", _domain_xml(f"{IN_HOST}/{image.name}", f"{IN_HOST}/rom.bin"))
    opted_in.enable("h1", "--bars", "hostmem,vram")
    started = host.run(["virsh", "start", opted_in.name], timeout=60)
    assert started.returncode == 0, started.stderr
    journal = _journal_with(opted_in, at)
    [rom] = [slot for slot in journal["slots"] if slot["gpa"] == at]
    assert rom["size"] == ROM_SIZE
    wrong = [slot for slot in journal["slots"] if slot["decision"] in ("tag", "keep")
             and (slot["hva"] == rom["hva"]
                  or slot["gpa"] < at + ROM_SIZE and at < slot["gpa"] + slot["size"])]
    assert not wrong, f"tagged memory that is not the GPU's: {wrong}"
