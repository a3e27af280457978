"""The guard's pure classifier, by example and by property (hypothesis)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

from ncdma.guard.classify import classify
from ncdma.kvm.memslot import Memslot
from ncdma.model.layout import BarWindow, FlatRange, GpuDevice, Layout, RamBlock, learn_vram_hva
from ncdma.model.slot import OwnerKind, SlotDecision

RAM_GPA, RAM_SIZE = 0, 128 << 20
RAM_HVA = 0x7F00_0000_0000
VRAM_HVA, VRAM_SIZE = 0x7F10_0000_0000, 8 << 20
VRAM_GPA, HOSTMEM_GPA, HOSTMEM_SIZE = 0xFC00_0000, 0xF800_0000, 64 << 20

VRAM_BLOCK = RamBlock("0000:00:02.0/vga.vram", 0x8000000, VRAM_SIZE, VRAM_SIZE, VRAM_HVA)
GPU = GpuDevice("video0", "virtio-vga", "/machine/peripheral/video0", "0000:00:02.0",
                HOSTMEM_SIZE,
                (BarWindow(0, VRAM_GPA, VRAM_SIZE, "vram", False, False),
                 BarWindow(4, HOSTMEM_GPA, HOSTMEM_SIZE, "hostmem", True, True)),
                VRAM_BLOCK)


def layout(hvas: bool = True) -> Layout:
    """A QEMU 10 layout (host addresses known), or a QEMU 7.2 one (no HVAs)."""
    ram = RamBlock("pc.ram", 0, RAM_SIZE, RAM_SIZE, RAM_HVA if hvas else None)
    vram = VRAM_BLOCK if hvas else RamBlock(VRAM_BLOCK.name, VRAM_BLOCK.offset, VRAM_SIZE,
                                            VRAM_SIZE, None)
    gpu = GpuDevice(*[getattr(GPU, field) for field in
                      ("qdev_id", "driver", "qom_path", "pci_address", "hostmem_size", "bars")],
                    vram)
    return Layout((10, 0, 0) if hvas else (7, 2, 0), (gpu,), (ram, vram),
                  ((RAM_HVA, RAM_SIZE),) if hvas else (), ((RAM_GPA, RAM_SIZE),), 0.0)


def slot(gpa: int, size: int, hva: int, number: int = 3, flags: int = 1) -> Memslot:
    return Memslot(number, flags, gpa, size, hva)


def test_vram_is_tagged_by_host_address_even_where_the_slot_covers_part_of_the_bar() -> None:
    decision = classify(slot(0x8400000 + RAM_SIZE, 4 << 20, VRAM_HVA + (4 << 20)), layout(),
                        {"vram"}, {})
    assert decision.decision is SlotDecision.TAG and decision.owner.kind is OwnerKind.VRAM


def test_vram_window_holding_other_memory_is_left_alone() -> None:
    decision = classify(slot(VRAM_GPA, VRAM_SIZE, 0x7E00_0000_0000), layout(), {"vram"}, {})
    assert decision.decision is SlotDecision.UNTOUCHED


def test_without_host_addresses_the_vram_window_proves_nothing() -> None:
    decision = classify(slot(VRAM_GPA, VRAM_SIZE, 0x1234000), layout(hvas=False), {"vram"}, {})
    assert decision.decision is SlotDecision.UNTOUCHED and "not known yet" in decision.reason


def flat_layout(*ranges: FlatRange) -> Layout:
    """A QEMU 7.2 layout whose flat view holds ``ranges``."""
    return dataclasses.replace(layout(hvas=False), flat=ranges)


def test_vram_host_address_is_learned_from_a_flat_range_and_a_slot_live_all_along() -> None:
    vram_at = FlatRange(VRAM_GPA, 4 << 20, "vga.vram", "ram", 0, True)
    rest = FlatRange(VRAM_GPA + (4 << 20) + 0x10000, (4 << 20) - 0x10000, "vga.vram", "ram",
                     (4 << 20) + 0x10000, True)
    rom = FlatRange(VRAM_GPA + (4 << 20), 0x10000, "pci-testdev.rom", "rom", 0, True)
    live = [(VRAM_GPA, 4 << 20, VRAM_HVA), (rom.start, rom.size, 0x7E00_0000_0000),
            (rest.start, rest.size, VRAM_HVA + rest.offset)]
    found = flat_layout(vram_at, rom, rest)
    assert learn_vram_hva(found, live) == VRAM_HVA
    learned = found.with_vram_hva(VRAM_BLOCK.name, VRAM_HVA)
    assert classify(slot(rest.start, rest.size, VRAM_HVA + rest.offset), learned, {"vram"},
                    {}).owner.kind is OwnerKind.VRAM
    # the ROM in the window is not vram's memory: left alone
    rom_slot = slot(rom.start, rom.size, 0x7E00_0000_0000)
    assert classify(rom_slot, learned, {"vram"}, {}).decision is SlotDecision.UNTOUCHED


def test_vram_host_address_is_not_learned_from_doubtful_evidence() -> None:
    vram_at = FlatRange(VRAM_GPA, VRAM_SIZE, "vga.vram", "ram", 0, True)
    # no slot live during the snapshot at that range; two slots that disagree
    assert learn_vram_hva(flat_layout(vram_at), []) is None
    other = FlatRange(0xA0000, 0x10000, "vga.vram", "ram", 0, True)
    assert learn_vram_hva(flat_layout(vram_at, other), [(VRAM_GPA, VRAM_SIZE, VRAM_HVA),
                                                        (0xA0000, 0x10000, 0x1000)]) is None
    # a range not registered with KVM, or a QEMU that reports the address itself
    assert learn_vram_hva(flat_layout(dataclasses.replace(vram_at, kvm=False)),
                          [(VRAM_GPA, VRAM_SIZE, VRAM_HVA)]) is None
    assert learn_vram_hva(dataclasses.replace(layout(), flat=(vram_at,)),
                          [(VRAM_GPA, VRAM_SIZE, VRAM_HVA)]) is None


def test_hostmem_window_holding_another_ramblock_is_left_alone() -> None:
    rom = RamBlock("0000:00:10.0/pci-testdev.rom", 0x9000000, 0x10000, 0x10000,
                   0x7E10_0000_0000)
    found = dataclasses.replace(layout(), ramblocks=(*layout().ramblocks, rom))
    decision = classify(slot(HOSTMEM_GPA + (16 << 20), 0x10000, rom.hva or 0), found,
                        {"hostmem"}, {})
    assert decision.decision is SlotDecision.UNTOUCHED and rom.name in decision.reason


def test_hostmem_needs_host_addresses() -> None:
    blob = slot(HOSTMEM_GPA + (1 << 20), 2 << 20, 0x7E00_0000_0000)
    assert classify(blob, layout(hvas=False), {"hostmem"}, {}).decision is SlotDecision.UNTOUCHED


def test_hostmem_blob_inside_the_window_is_tagged_only_when_selected() -> None:
    blob = slot(HOSTMEM_GPA + (1 << 20), 2 << 20, 0x7E00_0000_0000)
    decision = classify(blob, layout(), {"hostmem"}, {})
    assert decision.decision is SlotDecision.TAG and decision.owner.kind is OwnerKind.HOSTMEM
    assert decision.owner.bar == 4 and decision.owner.device
    assert not decision.owner.in_qemu_stream, "blob mappings are not RAMBlocks"
    assert classify(blob, layout(), {"vram"}, {}).decision is SlotDecision.UNTOUCHED


def test_guest_ram_is_never_tagged() -> None:
    decision = classify(slot(0x100000, 0x7F00000, RAM_HVA + 0x100000), layout(), {"vram"}, {})
    assert decision.decision is SlotDecision.UNTOUCHED
    assert decision.owner.kind is OwnerKind.SYSTEM_RAM


def test_unknown_layout_leaves_everything_untouched_but_keeps_tags() -> None:
    assert classify(slot(VRAM_GPA, VRAM_SIZE, VRAM_HVA), None, {"vram"}, {}).decision \
        is SlotDecision.UNTOUCHED
    assert classify(slot(VRAM_GPA, VRAM_SIZE, VRAM_HVA), None, {"vram"},
                    {3: (VRAM_GPA, VRAM_SIZE, VRAM_HVA)}).decision is SlotDecision.KEEP


def test_a_slot_id_back_with_other_memory_does_not_inherit_the_flag() -> None:
    # the table says slot 3 is the tagged vram; its delete was lost and QEMU reused id 3
    tagged = {3: (VRAM_GPA, VRAM_SIZE, VRAM_HVA)}
    ram = slot(0x100000, 0x7F00000, RAM_HVA + 0x100000)
    assert classify(ram, layout(), {"vram"}, tagged).decision is SlotDecision.UNTOUCHED
    assert classify(ram, None, {"vram"}, tagged).decision is SlotDecision.UNTOUCHED
    moved = slot(VRAM_GPA, VRAM_SIZE // 2, VRAM_HVA)
    assert classify(moved, None, {"vram"}, tagged).decision is SlotDecision.UNTOUCHED


_ADDRESSES = st.one_of(st.integers(0, 1 << 40), st.sampled_from(
    [0, RAM_GPA, RAM_SIZE - 4096, VRAM_GPA, HOSTMEM_GPA, RAM_HVA, VRAM_HVA, RAM_HVA + 4096]))
_SIZES = st.one_of(st.just(0), st.integers(1, 1 << 30), st.sampled_from([VRAM_SIZE, 4096]))
_SLOTS = st.builds(slot, gpa=_ADDRESSES, size=_SIZES, hva=_ADDRESSES,
                   number=st.integers(0, 40), flags=st.integers(0, 7))
_BARS = st.sampled_from([{"vram"}, {"hostmem"}, {"vram", "hostmem"}])


def _overlaps(start: int, size: int, low: int, length: int) -> bool:
    return start < low + length and low < start + size


@settings(max_examples=2000, deadline=None)
@given(_SLOTS, st.booleans(), _BARS,
       st.dictionaries(st.integers(0, 40), st.tuples(_ADDRESSES, _SIZES, _ADDRESSES),
                       max_size=5))
def test_properties(request: Memslot, hvas: bool, bars, tagged) -> None:
    decision = classify(request, layout(hvas), bars, tagged)
    if request.size == 0:
        assert decision.decision is SlotDecision.DELETE
    elif tagged.get(request.slot) == (request.gpa, request.size, request.hva):
        assert decision.decision is SlotDecision.KEEP, "a tagged slot keeps the flag on every re-issue"
    elif decision.decision is SlotDecision.TAG:
        assert not _overlaps(request.gpa, request.size, RAM_GPA, RAM_SIZE), "tagged guest RAM"
        assert not (hvas and _overlaps(request.hva, request.size, RAM_HVA, RAM_SIZE))
        assert hvas, "without host addresses nothing is proven to be GPU memory"
        in_vram = VRAM_HVA <= request.hva and request.hva + request.size <= VRAM_HVA + VRAM_SIZE
        in_hostmem = HOSTMEM_GPA <= request.gpa and \
            request.gpa + request.size <= HOSTMEM_GPA + HOSTMEM_SIZE and \
            not _overlaps(request.hva, request.size, VRAM_HVA, VRAM_SIZE)
        assert (in_vram and "vram" in bars) or (in_hostmem and "hostmem" in bars)
    else:
        assert decision.decision is SlotDecision.UNTOUCHED
