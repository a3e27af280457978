"""The QMP client against this machine's QEMU 7.2 under KVM (SeaBIOS, no hostmem property).

QEMU 7.2 has no HVA column in ``info ramblock``: these tests prove device discovery, BAR
windows, the vram RAMBlock by name, guest RAM by address, and every failure path. The lab
test (tests/integration/ncdma/test_qmp_on_lab.py) proves hostmem and HVAs on QEMU 10.0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from ncdma.errors import QmpError
from ncdma.model.layout import FlatRange, GpuDevice, Layout
from ncdma.qmp.client import (connect, disconnect, discover_layout, discover_layout_sync, flat_view,
    session)

QEMU = "/usr/bin/qemu-system-x86_64"
MIB = 1 << 20
PC = ["-machine", "pc,accel=kvm", "-device", "virtio-vga,id=video0",
      "-device", "virtio-gpu-pci,id=gpu1"]
# q35 with devices behind bridges, without ids, and on a PCI expander (pxb) root bus
BRIDGED = ["-machine", "q35,accel=kvm",
           "-device", "pcie-root-port,id=rp1,bus=pcie.0,addr=0x1c,chassis=1",
           "-device", "virtio-vga,bus=rp1",
           "-device", "pxb-pcie,id=pxb1,bus_nr=0x20,bus=pcie.0",
           "-device", "pcie-root-port,id=rp2,bus=pxb1,chassis=2",
           "-device", "virtio-gpu-pci,bus=rp2"]

Start = Callable[..., Path]


@pytest.fixture
def qemu(tmp_path: Path) -> Iterator[Start]:
    """start(machine_args, delay=0) -> QMP socket path of a paused (-S) QEMU 7.2, killed at
    the end; with a delay, QEMU is started that many seconds later, in the background."""
    started: list[subprocess.Popen[bytes]] = []

    def start(machine: Sequence[str] = PC, delay: float = 0) -> Path:
        sock = tmp_path / f"qmp{len(started)}.sock"
        argv = [QEMU, *machine, "-m", "128", "-S", "-display", "none", "-nodefaults",
                "-qmp", f"unix:{sock},server=on,wait=off"]
        command = ["sh", "-c", f'sleep {delay}; exec "$@"', "sh", *argv] if delay else argv
        log = open(tmp_path / f"qemu{len(started)}.log", "wb")
        started.append(subprocess.Popen(command, stdout=log, stderr=log))
        log.close()
        return sock

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def pid_of(sock: Path) -> int:
    """Pid of the QEMU serving ``sock``: its command line names the socket."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0] == QEMU.encode() and f"unix:{sock},server=on,wait=off".encode() in argv:
                return int(entry.name)
    raise AssertionError(f"no QEMU serves {sock}")


def by_id(layout: Layout) -> dict[str | None, GpuDevice]:
    return {gpu.qdev_id: gpu for gpu in layout.gpus}


def assigned(layout: Layout) -> bool:
    """True once SeaBIOS has given every GPU its BAR addresses."""
    return all(any(b.address is not None for b in gpu.bars) for gpu in layout.gpus)


async def discover_after_firmware(sock: Path) -> tuple[Layout, Layout, tuple[FlatRange, ...]]:
    """Layout before cont; layout and flat view once SeaBIOS assigned the BARs (about 1 s
    on pc, up to 3 s with bridges)."""
    async with session(sock, 10) as client:
        before = await discover_layout(client, 10)
        await client.execute("cont")
        deadline = time.monotonic() + 15
        after = before
        while not assigned(after) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            after = await discover_layout(client, 10)
        return before, after, await flat_view(client, 10)


def test_discovery_before_the_vcpus_run(qemu: Start) -> None:
    began = time.monotonic()
    layout = discover_layout_sync(qemu(), 10)
    assert layout.taken_at >= began
    assert layout.qemu_version[:2] == (7, 2)
    gpus = by_id(layout)
    assert list(gpus) == ["video0", "gpu1"]
    video0, gpu1 = gpus["video0"], gpus["gpu1"]
    assert (video0.driver, video0.pci_address, video0.qom_path, video0.hostmem_size) == \
        ("virtio-vga", "0000:00:02.0", "/machine/peripheral/video0", 0)
    assert (gpu1.driver, gpu1.pci_address, gpu1.hostmem_size) == \
        ("virtio-gpu-pci", "0000:00:03.0", 0)
    assert [(b.bar, b.kind, b.size) for b in video0.bars] == \
        [(0, "vram", 8 * MIB), (2, "other", 0x4000), (4, "other", 0x1000), (6, "other", 0x10000)]
    assert [(b.bar, b.kind) for b in gpu1.bars] == [(1, "other"), (4, "other")]
    assert all(b.address is None for gpu in layout.gpus for b in gpu.bars)
    assert video0.vram is not None and video0.vram.name == "0000:00:02.0/vga.vram"
    assert video0.vram.hva is None and video0.vram.used_length == 8 * MIB
    assert gpu1.vram is None
    assert layout.system_ram_gpa == ((0, 0xA0000), (0x100000, 128 * MIB - 0x100000))
    assert layout.system_ram_hva == ()


def test_discovery_after_the_firmware_assigned_the_bars(qemu: Start) -> None:
    before, after, flat = asyncio.run(discover_after_firmware(qemu()))
    video0, gpu1 = by_id(after)["video0"], by_id(after)["gpu1"]
    vram_bar = video0.bars[0]
    assert vram_bar.kind == "vram" and vram_bar.address is not None
    assert gpu1.bars[1].address is not None and gpu1.bars[1].kind == "other"
    assert after.gpu_bar_at(vram_bar.address, 8 * MIB) == (video0, vram_bar)
    assert before.gpu_bar_at(vram_bar.address, 8 * MIB) is None
    assert not after.overlaps_system_ram(vram_bar.address, 8 * MIB, 0)
    assert after.overlaps_system_ram(0x1000, 0x1000, 0)
    vram = [r for r in flat if r.name == "vga.vram"]
    assert [(r.start, r.size, r.kvm) for r in vram] == [(vram_bar.address, 8 * MIB, True)]
    assert after.taken_at > before.taken_at


def test_devices_behind_bridges_without_ids_and_on_an_expander_bus(qemu: Start) -> None:
    before, after, _ = asyncio.run(discover_after_firmware(qemu(BRIDGED)))
    for layout in (before, after):
        assert [(g.qdev_id, g.driver, g.pci_address, g.qom_path) for g in layout.gpus] == [
            (None, "virtio-vga", "0000:00:1c.0:00.0", "/machine/peripheral-anon/device[0]"),
            (None, "virtio-gpu-pci", "0000:20:00.0:00.0", "/machine/peripheral-anon/device[1]")]
        vram = layout.gpus[0].vram
        assert vram is not None and vram.name == "0000:00:1c.0:00.0/vga.vram"
    # query-pci lists nothing behind a bridge the firmware has not numbered yet
    assert [g.bars for g in before.gpus] == [(), ()]
    vga, gpu = after.gpus
    assert vga.bars[0].kind == "vram" and vga.bars[0].address is not None
    assert any(b.bar == 4 and b.address is not None for b in gpu.bars)


def test_connect_waits_for_a_socket_that_appears_late(qemu: Start) -> None:
    sock = qemu(delay=1.0)
    assert not sock.exists()
    assert discover_layout_sync(sock, 15).qemu_version[:2] == (7, 2)


def test_a_socket_that_never_appears_fails_in_time(tmp_path: Path) -> None:
    sock = tmp_path / "never.sock"
    began = time.monotonic()
    with pytest.raises(QmpError) as caught:
        discover_layout_sync(sock, 1.0)
    assert time.monotonic() - began < 2.0
    assert caught.value.message == f"QMP socket {sock} did not appear within 1 s"
    assert "-qmp unix:PATH,server=on" in caught.value.hint


def test_a_socket_left_behind_by_a_dead_qemu_is_named_as_such(tmp_path: Path) -> None:
    sock = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(sock))  # bound, never listening: connect() is refused
    with pytest.raises(QmpError, match="refuses connections") as caught:
        discover_layout_sync(sock, 0.5)
    assert "exited" in caught.value.hint


def test_a_socket_that_is_not_qmp_fails_in_time(tmp_path: Path) -> None:
    sock = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(str(sock))
        silent.listen()  # accepts, never greets
        with pytest.raises(QmpError, match=r"did not answer within 1 s while connecting"):
            discover_layout_sync(sock, 1.0)


def test_a_stopped_qemu_times_out_and_the_session_survives(qemu: Start) -> None:
    sock = qemu()

    async def run() -> Layout:
        client = await connect(sock, 10)
        try:
            os.kill(pid_of(sock), signal.SIGSTOP)
            began = time.monotonic()
            with pytest.raises(QmpError, match="did not answer within 0.5 s while discovering"):
                await discover_layout(client, 0.5)
            assert time.monotonic() - began < 1.5
            os.kill(pid_of(sock), signal.SIGCONT)
            return await discover_layout(client, 10)
        finally:
            await disconnect(client, 10)

    assert len(asyncio.run(run()).gpus) == 2


def test_qemu_killed_mid_call_is_an_error_not_a_hang(qemu: Start) -> None:
    sock = qemu()

    async def run() -> float:
        client = await connect(sock, 10)
        pid = pid_of(sock)
        os.kill(pid, signal.SIGSTOP)  # the first command now waits for an answer
        call = asyncio.create_task(discover_layout(client, 60))
        await asyncio.sleep(0.3)
        began = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        try:
            with pytest.raises(QmpError, match="connection closed during query-version") as caught:
                await call
            assert "QEMU exited or crashed" in caught.value.message
            return time.monotonic() - began
        finally:
            await disconnect(client, 10)

    assert asyncio.run(run()) < 5
