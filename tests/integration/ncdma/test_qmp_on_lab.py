"""The QMP client against QEMU 10.0 inside lab host h1: hostmem windows and HVAs.

QEMU runs directly in h1 (no libvirt), paused (-S), with its QMP socket in h1's /tmp; the
client connects from outside through /proc/PID/root, which reaches the host's mount
namespace. Each test kills its QEMU: no QEMU is left running in the host.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncdma.model.layout import FlatRange, GpuDevice, Layout
from ncdma.qmp.client import discover_layout, discover_layout_sync, flat_view, session
from lab import Lab
from lab.host import Host

pytestmark = pytest.mark.lab

MIB = 1 << 20
QEMU_ARGS = ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-m", "128", "-S",
             "-display", "none", "-nodefaults",
             "-device", "virtio-vga,id=video0,hostmem=64M",
             "-device", "virtio-gpu-pci,id=gpu1,hostmem=32M"]


class LabQemu:
    """A paused QEMU 10.0 in a lab host, daemonized, known by its pid file."""

    def __init__(self, host: Host) -> None:
        self.host = host
        name = f"ncdma-qmp-{uuid.uuid4().hex[:8]}"
        self.inside = f"/tmp/{name}.sock"
        self.pidfile = f"/tmp/{name}.pid"

    @property
    def socket(self) -> Path:
        """The QMP socket as seen from outside the host."""
        return self.host.root_path / self.inside.lstrip("/")

    def start(self) -> None:
        done = self.host.run([*QEMU_ARGS, "-qmp", f"unix:{self.inside},server=on,wait=off",
                              "-daemonize", "-pidfile", self.pidfile], timeout=60)
        assert done.returncode == 0, done.stderr

    def running(self) -> bool:
        return self.host.run(["sh", "-c", f"kill -0 $(cat {self.pidfile})"]).returncode == 0

    def stop(self) -> None:
        self.host.run(["sh", "-c", f"kill -9 $(cat {self.pidfile})"], timeout=30)
        deadline = time.monotonic() + 10
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.running(), "QEMU in the lab host did not die"
        self.host.run(["rm", "-f", self.inside, self.pidfile])


@pytest.fixture
def qemu10(lab: Lab) -> Iterator[LabQemu]:
    qemu = LabQemu(lab.host("h1"))
    qemu.start()
    yield qemu
    qemu.stop()


def by_id(layout: Layout) -> dict[str | None, GpuDevice]:
    return {gpu.qdev_id: gpu for gpu in layout.gpus}


async def after_firmware(sock: Path) -> tuple[Layout, tuple[FlatRange, ...], tuple[FlatRange, ...]]:
    """Flat view before cont; layout and flat view once SeaBIOS assigned the hostmem BARs."""
    async with session(sock, 10) as client:
        before = await flat_view(client, 10)
        await client.execute("cont")
        deadline = time.monotonic() + 15
        while True:
            await asyncio.sleep(0.25)
            layout = await discover_layout(client, 10)
            if all(b.address is not None for g in layout.gpus for b in g.bars
                   if b.kind != "other") or time.monotonic() > deadline:
                return layout, before, await flat_view(client, 10)


def test_hostmem_windows_found_by_size_with_host_addresses(qemu10: LabQemu) -> None:
    layout = discover_layout_sync(qemu10.socket, 10)
    assert layout.qemu_version[:2] == (10, 0)
    gpus = by_id(layout)
    for name, size in (("video0", 64 * MIB), ("gpu1", 32 * MIB)):
        assert gpus[name].hostmem_size == size
        hostmem = [b for b in gpus[name].bars if b.kind == "hostmem"]
        assert [(b.bar, b.size, b.mem64, b.prefetch, b.address) for b in hostmem] == \
            [(4, size, True, True, None)]
    assert [b.bar for b in gpus["video0"].bars if b.kind == "vram"] == [0]
    assert all(block.hva is not None for block in layout.ramblocks)
    vram = gpus["video0"].vram
    assert vram is not None and vram.name == "0000:00:02.0/vga.vram"
    assert vram.hva is not None and vram.used_length == 8 * MIB
    assert vram.holds(vram.hva, vram.used_length)
    assert len(layout.system_ram_hva) == 1 and layout.system_ram_hva[0][1] == 128 * MIB
    assert not layout.overlaps_system_ram(0xFE000000, 8 * MIB, vram.hva)


def test_bars_and_flat_view_once_the_firmware_enabled_them(qemu10: LabQemu) -> None:
    layout, before, after = asyncio.run(after_firmware(qemu10.socket))
    gpus = by_id(layout)
    windows = {name: next(b for b in gpus[name].bars if b.kind == "hostmem")
               for name in ("video0", "gpu1")}
    assert all(bar.address is not None for bar in windows.values())
    for name, bar in windows.items():
        assert bar.address is not None
        assert layout.gpu_bar_at(bar.address + MIB, 2 * MIB) == (gpus[name], bar)
    vram_bar = gpus["video0"].bars[0]
    assert vram_bar.kind == "vram" and vram_bar.address is not None
    assert "vga.vram" not in {r.name for r in before}
    assert [(r.start, r.size, r.kind, r.kvm) for r in after if r.name == "vga.vram"] == \
        [(vram_bar.address, 8 * MIB, "ram", True)]
    vram = gpus["video0"].vram
    assert vram is not None and vram.hva is not None
    assert not layout.overlaps_system_ram(vram_bar.address, 8 * MIB, vram.hva)
    assert layout.overlaps_system_ram(vram_bar.address, 8 * MIB, layout.system_ram_hva[0][0])
