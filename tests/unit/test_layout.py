"""The layout parsers and the guard's per-ioctl helpers, on answers recorded from real QEMU.

tests/unit/data/qemu-VERSION-* were recorded over QMP from Debian's QEMU 7.2.22 (this
machine) and 10.0.13 (inside lab host h1), both under KVM, started as
``-machine pc,accel=kvm -m 128 -S -display none -nodefaults -device virtio-vga,id=video0
-device virtio-gpu-pci,id=gpu1`` (10.0 with ``hostmem=64M`` and ``hostmem=32M``): '-paused-'
before ``cont``, '-running-' 1.5 s after it, once SeaBIOS had assigned the BARs.
"""

from __future__ import annotations

import json
import timeit
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncdma.model.layout import (BarWindow, Layout, QomGpu, build_layout, device_path, gpu_children,
    is_gpu_driver, parse_flat_view, parse_pci, parse_ramblocks, parse_version)

DATA = Path(__file__).parent / "data"
MIB = 1 << 20
VRAM_BAR = 0xFE000000  # where SeaBIOS put virtio-vga's BAR 0 in both recordings
HOSTMEM = {"video0": (0xF8000000, 64 * MIB), "gpu1": (0xFC000000, 32 * MIB)}  # QEMU 10.0
VRAM_HVA_10 = 0x7FE481A00000
PC_RAM_HVA_10 = 0x7FE46BE00000


def recorded(version: str, name: str) -> str:
    return (DATA / f"qemu-{version}-{name}").read_text()


def answer(version: str, name: str) -> Any:
    return json.loads(recorded(version, name))


def qom_gpus(version: str) -> list[QomGpu]:
    """The two devices of the recordings as QOM describes them (hostmem only on 10.0)."""
    sizes = {"video0": 64 * MIB, "gpu1": 32 * MIB} if version == "10.0" else {}
    return [QomGpu(f"/machine/peripheral/{name}", driver, f"0000:00:0{slot}.0",
                   sizes.get(name, 0))
            for slot, (name, driver) in enumerate(
                gpu_children(answer(version, "qom-peripheral.json")["/machine/peripheral"]), 2)]


def layout(version: str, state: str, gpus: list[QomGpu] | None = None) -> Layout:
    memdevs = [m["id"] for m in answer(version, "query-memdev.json")]
    return build_layout(parse_version(answer(version, "query-version.json")),
                        qom_gpus(version) if gpus is None else gpus,
                        parse_pci(answer(version, f"{state}-query-pci.json")),
                        parse_ramblocks(recorded(version, "ramblock.txt")),
                        parse_flat_view(recorded(version, f"{state}-mtree-f.txt")),
                        memdevs, taken_at=12.5)


def gpu(found: Layout, qdev_id: str) -> Any:
    return next(g for g in found.gpus if g.qdev_id == qdev_id)


def bars(found: Layout, qdev_id: str) -> dict[int, BarWindow]:
    return {b.bar: b for b in gpu(found, qdev_id).bars}


# --- info ramblock -------------------------------------------------------------------------

def test_ramblocks_of_qemu_7_2_have_no_hva() -> None:
    blocks = parse_ramblocks(recorded("7.2", "ramblock.txt"))
    assert [b.name for b in blocks] == [
        "pc.ram", "0000:00:02.0/vga.vram", "/rom@etc/acpi/tables", "pc.bios", "pc.rom",
        "0000:00:02.0/virtio-vga.rom", "/rom@etc/table-loader", "/rom@etc/acpi/rsdp"]
    assert all(b.hva is None for b in blocks)
    vram = blocks[1]
    assert (vram.offset, vram.used_length, vram.max_length) == (0x8080000, 8 * MIB, 8 * MIB)
    tables = blocks[2]
    assert (tables.used_length, tables.max_length) == (0x20000, 0x200000)


def test_ramblocks_of_qemu_10_0_carry_their_hva() -> None:
    blocks = {b.name: b for b in parse_ramblocks(recorded("10.0", "ramblock.txt"))}
    assert blocks["0000:00:02.0/vga.vram"].hva == VRAM_HVA_10
    assert blocks["pc.ram"].hva == PC_RAM_HVA_10
    assert all(b.hva is not None for b in blocks.values())
    assert "hva 0x7fe481a00000 used 0x800000" in str(blocks["0000:00:02.0/vga.vram"])


@pytest.mark.parametrize("text", ["", "pc.ram 4 KiB 0x0 0x0 0x0\n",
                                  "  Block Name  PSize  Offset  Used  Total\n  pc.ram what\n"])
def test_unreadable_ramblock_output_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="info ramblock"):
        parse_ramblocks(text)


# --- info mtree -f -------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["7.2", "10.0"])
def test_flat_view_marks_kvm_ranges_and_shows_vram_once_enabled(version: str) -> None:
    paused = parse_flat_view(recorded(version, "paused-mtree-f.txt"))
    first = paused[0]
    assert (first.start, first.size, first.name, first.kind, first.kvm) == \
        (0, 0xA0000, "pc.ram", "ram", True)
    lowmem = next(r for r in paused if r.name == "vga-lowmem")
    assert lowmem.kind == "i/o" and not lowmem.kvm
    assert "vga.vram" not in {r.name for r in paused}
    running = parse_flat_view(recorded(version, "running-mtree-f.txt"))
    vram = next(r for r in running if r.name == "vga.vram")
    assert (vram.start, vram.size, vram.kind, vram.offset, vram.kvm) == \
        (VRAM_BAR, 8 * MIB, "ram", 0, True)
    shadowed = next(r for r in running if r.start == 0xC0000)
    assert (shadowed.name, shadowed.offset) == ("pc.ram", 0xC0000)  # after SeaBIOS's PAM setup
    assert str(vram) == "0xfe000000-0xfe7fffff ram vga.vram @0x0 KVM"


def test_flat_view_of_another_address_space() -> None:
    ports = parse_flat_view(recorded("7.2", "paused-mtree-f.txt"), "I/O")
    assert ports[0].name == "dma-chan" and not any(r.kvm for r in ports)
    assert next(r for r in ports if r.name == "rtc").offset == 1


def test_flat_view_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="no flat view of address space 'nowhere'"):
        parse_flat_view(recorded("7.2", "paused-mtree-f.txt"), "nowhere")
    broken = 'FlatView #0\n AS "memory", root: system\n  0000-zzzz (prio 0, ram): x\n'
    with pytest.raises(ValueError, match="unreadable range"):
        parse_flat_view(broken)


# --- query-pci, QOM, query-version ----------------------------------------------------------

def test_pci_functions_with_memory_bars_unassigned_before_the_firmware_runs() -> None:
    functions = {f.dev_path: f for f in parse_pci(answer("7.2", "paused-query-pci.json"))}
    assert list(functions) == ["0000:00:00.0", "0000:00:01.0", "0000:00:01.1", "0000:00:01.3",
                               "0000:00:02.0", "0000:00:03.0"]
    vga = functions["0000:00:02.0"]
    assert (vga.vendor, vga.device) == (0x1AF4, 0x1050)
    assert [(b.bar, b.address, b.size) for b in vga.bars] == \
        [(0, None, 8 * MIB), (2, None, 0x4000), (4, None, 0x1000), (6, None, 0x10000)]
    assert functions["0000:00:01.1"].bars == ()  # the IDE controller has only an I/O BAR


def test_pci_bars_carry_their_addresses_once_assigned() -> None:
    functions = {f.dev_path: f for f in parse_pci(answer("10.0", "running-query-pci.json"))}
    hostmem = functions["0000:00:02.0"].bars[3]
    assert (hostmem.bar, hostmem.address, hostmem.size, hostmem.mem64, hostmem.prefetch) == \
        (4, 0xF8000000, 64 * MIB, True, True)
    assert functions["0000:00:02.0"].bars[-1].address is None  # the ROM BAR stays disabled


def test_devices_behind_bridges_get_one_hop_per_bridge() -> None:
    bridged = [{"bus": 0x20, "devices": [{
        "slot": 0, "function": 0, "qdev_id": "rp2", "id": {"vendor": 0x1B36, "device": 0xC},
        "regions": [], "pci_bridge": {"devices": [{
            "slot": 0, "function": 0, "qdev_id": "", "id": {"vendor": 0x1AF4, "device": 0x1050},
            "regions": [{"bar": 4, "type": "memory", "address": -1, "size": 16384,
                         "mem_type_64": True, "prefetch": True}]}]}}]}]
    assert [f.dev_path for f in parse_pci(bridged)] == ["0000:20:00.0", "0000:20:00.0:00.0"]
    assert device_path(0, ["1c.0", "00.0"]) == "0000:00:1c.0:00.0"


def test_unreadable_query_pci_is_refused() -> None:
    with pytest.raises(ValueError, match="query-pci"):
        parse_pci([{"bus": 0, "devices": [{"slot": 1}]}])


def test_virtio_gpu_devices_of_every_flavour_are_recognised() -> None:
    listing = answer("10.0", "qom-peripheral.json")["/machine/peripheral"]
    assert gpu_children(listing) == [("video0", "virtio-vga"), ("gpu1", "virtio-gpu-pci")]
    for driver in ("virtio-vga", "virtio-vga-gl", "virtio-vga-rutabaga", "virtio-gpu-pci",
                   "virtio-gpu-gl-pci", "virtio-gpu-rutabaga-pci", "vhost-user-vga",
                   "vhost-user-gpu-pci"):
        assert is_gpu_driver(driver), driver
    for other in ("virtio-gpu-device", "virtio-gpu-gl-device", "vhost-user-gpu", "VGA",
                  "bochs-display", "virtio-net-pci", "string"):
        assert not is_gpu_driver(other), other


def test_version() -> None:
    assert parse_version(answer("7.2", "query-version.json")) == (7, 2, 22)
    assert parse_version(answer("10.0", "query-version.json")) == (10, 0, 13)
    with pytest.raises(ValueError, match="query-version"):
        parse_version({"qemu": {"major": 10}})


# --- the layout -----------------------------------------------------------------------------

def test_hostmem_windows_are_found_by_size_on_qemu_10_0() -> None:
    found = layout("10.0", "running")
    for name, (address, size) in HOSTMEM.items():
        hostmem = [b for b in gpu(found, name).bars if b.kind == "hostmem"]
        assert [(b.bar, b.address, b.size, b.mem64, b.prefetch) for b in hostmem] == \
            [(4, address, size, True, True)]
    assert [b.bar for b in gpu(found, "video0").bars if b.kind == "vram"] == [0]
    assert [b.kind for b in gpu(found, "gpu1").bars] == ["other", "other", "hostmem"]


def test_without_hostmem_bar_4_is_just_the_modern_virtio_bar() -> None:
    found = layout("7.2", "running")
    modern = bars(found, "gpu1")[4]
    assert (modern.size, modern.mem64, modern.prefetch, modern.kind) == \
        (0x4000, True, True, "other")
    assert not any(b.kind == "hostmem" for g in found.gpus for b in g.bars)
    assert bars(found, "video0")[0].kind == "vram"


def test_a_hostmem_size_two_bars_fit_selects_neither() -> None:
    gpus = [replace(g, hostmem=0x4000) if g.qdev_id == "gpu1" else g for g in qom_gpus("10.0")]
    found = layout("10.0", "running", gpus)
    assert bars(found, "gpu1")[2].kind == "hostmem"  # only BAR 2 is 16 KiB here
    twins = [replace(f, bars=tuple(replace(b, size=0x4000) if b.bar == 4 else b for b in f.bars))
             for f in parse_pci(answer("10.0", "running-query-pci.json"))]
    ambiguous = build_layout((10, 0, 13), gpus, twins,
                             parse_ramblocks(recorded("10.0", "ramblock.txt")), (), ["pc.ram"], 0)
    assert {b.kind for b in gpu(ambiguous, "gpu1").bars} == {"other"}


def test_vram_ramblock_and_guest_ram_on_qemu_10_0() -> None:
    found = layout("10.0", "paused")
    vram = gpu(found, "video0").vram
    assert vram is not None and (vram.name, vram.hva, vram.used_length) == \
        ("0000:00:02.0/vga.vram", VRAM_HVA_10, 8 * MIB)
    assert gpu(found, "gpu1").vram is None
    assert found.system_ram_hva == ((PC_RAM_HVA_10, 128 * MIB),)
    assert found.system_ram_gpa == ((0, 0xA0000), (0x100000, 128 * MIB - 0x100000))
    assert all(b.address is None for g in found.gpus for b in g.bars)
    assert (found.qemu_version, found.taken_at) == ((10, 0, 13), 12.5)


def test_qemu_7_2_knows_the_vram_block_but_no_host_addresses() -> None:
    found = layout("7.2", "running")
    vram = gpu(found, "video0").vram
    assert vram is not None and vram.hva is None
    assert found.system_ram_hva == ()
    assert not vram.holds(0x7F0000000000, 0x1000)
    assert found.system_ram_gpa == ((0, 0xA0000), (0xC0000, 128 * MIB - 0xC0000))


def test_a_gpu_whose_address_holds_another_device_is_refused() -> None:
    misplaced = [replace(qom_gpus("7.2")[1], pci_address="0000:00:01.1")]
    with pytest.raises(ValueError, match=r"at 0000:00:01.1 in QOM, but query-pci has device "
                                         r"8086:7010 there"):
        layout("7.2", "paused", misplaced)


def test_guest_ram_must_be_known() -> None:
    with pytest.raises(ValueError, match="no RAMBlock belongs to a memory backend"):
        build_layout((7, 2, 22), [], [], parse_ramblocks(recorded("7.2", "ramblock.txt")), (),
                     ["ram-node0"], 0)


def test_the_guards_helpers_on_qemu_10_0() -> None:
    found = layout("10.0", "running")
    video0 = gpu(found, "video0")
    assert video0.vram is not None and video0.vram.holds(VRAM_HVA_10 + 0x1000, 0x1000)
    assert not video0.vram.holds(VRAM_HVA_10 + 8 * MIB - 0x1000, 0x2000)  # crosses the end
    assert found.gpu_bar_at(VRAM_BAR, 8 * MIB) == (video0, bars(found, "video0")[0])
    blob = found.gpu_bar_at(0xFC000000 + 16 * MIB, 2 * MIB)
    assert blob is not None and (blob[0].qdev_id, blob[1].kind) == ("gpu1", "hostmem")
    assert found.gpu_bar_at(0xFC000000 + 31 * MIB, 2 * MIB) is None  # runs past the window
    assert found.gpu_bar_at(0x100000, 0x1000) is None
    assert not found.overlaps_system_ram(VRAM_BAR, 8 * MIB, VRAM_HVA_10)
    assert found.overlaps_system_ram(VRAM_BAR, 8 * MIB, PC_RAM_HVA_10 + 0x10000)  # RAM aliased
    assert found.overlaps_system_ram(0x9F000, 0x2000, VRAM_HVA_10)
    assert not found.overlaps_system_ram(0xA0000, 0x20000, VRAM_HVA_10)  # the VGA hole


def test_before_the_firmware_no_bar_window_holds_anything() -> None:
    found = layout("10.0", "paused")
    assert found.gpu_bar_at(VRAM_BAR, 8 * MIB) is None
    assert gpu(found, "video0").vram.holds(VRAM_HVA_10, 8 * MIB)


def test_layout_prints_addresses_in_hex() -> None:
    text = str(layout("10.0", "running"))
    assert "QEMU 10.0.13" in text
    assert "video0 virtio-vga at 0000:00:02.0 hostmem 0x4000000" in text
    assert "BAR 4 hostmem at 0xf8000000 size 0x4000000 (64-bit prefetchable)" in text
    assert "vram 0000:00:02.0/vga.vram hva 0x7fe481a00000" in text
    assert "host 0x7fe46be00000+0x8000000" in text
    assert "host unknown" in str(layout("7.2", "paused"))


# --- properties of the helpers --------------------------------------------------------------

ADDRESSES = st.integers(0, 1 << 40)
SIZES = st.integers(1, 1 << 30)


@cache
def running_10() -> Layout:
    return layout("10.0", "running")


@given(gpa=ADDRESSES, hva=ADDRESSES, size=SIZES)
def test_overlap_is_exactly_interval_intersection(gpa: int, hva: int, size: int) -> None:
    found = running_10()

    def meets(start: int, ranges: tuple[tuple[int, int], ...]) -> bool:
        return any(max(start, s) < min(start + size, s + n) for s, n in ranges)

    assert found.overlaps_system_ram(gpa, size, hva) == \
        (meets(gpa, found.system_ram_gpa) or meets(hva, found.system_ram_hva))


@given(gpa=st.integers(0xF0000000, 0x100000000), size=SIZES)
def test_a_bar_is_found_exactly_when_one_holds_the_whole_range(gpa: int, size: int) -> None:
    found = running_10()
    holding = [(g, b) for g in found.gpus for b in g.bars
               if b.address is not None and b.address <= gpa and gpa + size <= b.address + b.size]
    assert found.gpu_bar_at(gpa, size) == (holding[0] if holding else None)


def test_the_per_ioctl_helpers_are_cheap() -> None:
    found = running_10()
    calls = 20000
    costs = {name: timeit.timeit(call, number=calls) / calls for name, call in {
        "gpu_bar_at": lambda: found.gpu_bar_at(0xFC000000, 0x1000),
        "overlaps_system_ram": lambda: found.overlaps_system_ram(VRAM_BAR, 8 * MIB, VRAM_HVA_10),
    }.items()}
    assert all(cost < 50e-6 for cost in costs.values()), costs
