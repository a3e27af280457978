"""A running QEMU's memory layout as immutable snapshots, and the parsers that build them.

The guard classifies every KVM memslot against a :class:`Layout` while QEMU waits in the
ioctl, so a layout is plain data: it never talks to QEMU, and its per-ioctl helpers
(:meth:`Layout.ramblock_meeting`, :meth:`Layout.gpu_bar_at`,
:meth:`Layout.overlaps_system_ram`) are pure loops over a handful of devices and RAMBlocks.
``ncdma.qmp`` gathers QEMU's answers; everything here only parses them (no I/O, no clock).

What QEMU tells, by version (recorded in tests/unit/data/):

- ``info ramblock`` has an HVA column from QEMU 8.0 (10.0: ``HVA`` and ``RO``); QEMU 7.2 has
  none, so :attr:`RamBlock.hva` is None there until the guard learns vram's from the flat
  view (:func:`learn_vram_hva`), and guest RAM is known only by guest-physical address.
- Device RAMBlocks are named ``<QEMU device path>/<region>``, the virtio-vga framebuffer
  ``0000:00:02.0/vga.vram`` in 7.2 and 10.0 alike; the device path of a device behind
  bridges adds one ``:SS.F`` per hop (``0000:00:1c.0:00.0/vga.vram``).
- ``info mtree -f`` prints `` KVM`` after each range registered with KVM (7.2 and 10.0).
- ``query-pci`` reports a BAR's address as -1 while the guest has not enabled it, and lists
  nothing behind a bridge the firmware has not numbered yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

BarKind = Literal["hostmem", "vram", "other"]

#: PCI proxies of every virtio-gpu flavour; the bare backends (virtio-gpu-device,
#: vhost-user-gpu) sit inside them or on virtio-mmio and have no BARs.
_GPU_DRIVER = re.compile(r"^(virtio|vhost-user)-(vga(-[a-z0-9]+)*|gpu(-[a-z0-9]+)*-pci)$")
_CHILD = re.compile(r"^child<(.+)>$")
_UNASSIGNED = (-1, (1 << 64) - 1)
#: (vendor, device) of every virtio-gpu PCI function: Red Hat, virtio 1.0 device id 16.
VIRTIO_GPU_PCI_ID = (0x1AF4, 0x1050)
_RAMBLOCK_ROW = re.compile(
    r"^\s*(?P<name>\S.*?)\s+\d+ [KMGTPE]?i?B\s+0x(?P<offset>[0-9a-f]+)\s+0x(?P<used>[0-9a-f]+)"
    r"\s+0x(?P<total>[0-9a-f]+)(?:\s+0x(?P<hva>[0-9a-f]+))?(?:\s+r[ow])?\s*$")
_FLAT_ROW = re.compile(
    r"^\s+(?P<start>[0-9a-f]+)-(?P<last>[0-9a-f]+) \(prio -?\d+, (?P<kind>[^)]+)\): "
    r"(?P<name>.*?)(?: @(?P<offset>[0-9a-f]+))?(?P<kvm> KVM)?$")


def _hex(value: int | None, missing: str) -> str:
    return missing if value is None else f"{value:#x}"


def _overlaps(start: int, end: int, ranges: Iterable[tuple[int, int]]) -> bool:
    """True if [start, end) meets any (start, size) range."""
    for other, size in ranges:
        if start < other + size and other < end:
            return True
    return False


@dataclass(frozen=True)
class RamBlock:
    """A RAMBlock: QEMU-owned host memory, by offset in QEMU's RAM space and by HVA.

    ``hva`` is None on QEMU < 8.0, whose ``info ramblock`` does not show it.
    """

    name: str
    offset: int
    used_length: int
    max_length: int
    hva: int | None

    def holds(self, hva: int, size: int) -> bool:
        """True if host range [hva, hva+size) lies inside this block's reservation."""
        return self.hva is not None and self.hva <= hva and hva + size <= self.hva + self.max_length

    def __str__(self) -> str:
        return (f"{self.name} hva {_hex(self.hva, 'unknown')} used {self.used_length:#x} "
                f"max {self.max_length:#x} offset {self.offset:#x}")


@dataclass(frozen=True)
class BarWindow:
    """One memory BAR of a PCI function; ``address`` is None while the guest has not
    enabled it (QEMU reports -1)."""

    bar: int
    address: int | None
    size: int
    kind: BarKind
    mem64: bool
    prefetch: bool

    def holds(self, gpa: int, size: int) -> bool:
        """True if guest range [gpa, gpa+size) lies inside this window."""
        return self.address is not None and self.address <= gpa and \
            gpa + size <= self.address + self.size

    def __str__(self) -> str:
        bits = ("64-bit" if self.mem64 else "32-bit") + (" prefetchable" if self.prefetch else "")
        return (f"BAR {self.bar} {self.kind} at {_hex(self.address, 'unassigned')} "
                f"size {self.size:#x} ({bits})")


@dataclass(frozen=True)
class PciFunction:
    """A PCI function as ``query-pci`` lists it; ``dev_path`` is QEMU's device path
    (the prefix of its RAMBlock names) and ``bars`` its memory BARs, all of kind other."""

    dev_path: str
    vendor: int
    device: int
    bars: tuple[BarWindow, ...]


@dataclass(frozen=True)
class QomGpu:
    """A virtio-gpu device as QOM describes it; ``hostmem`` is 0 when unset or unknown
    to this QEMU (< 8.2)."""

    qom_path: str
    driver: str
    pci_address: str
    hostmem: int

    @property
    def qdev_id(self) -> str | None:
        """The device's id (libvirt's alias), None for a device created without one."""
        parent, _, name = self.qom_path.rpartition("/")
        return name if parent == "/machine/peripheral" else None


@dataclass(frozen=True)
class GpuDevice:
    """A virtio-gpu PCI device with its BARs classified.

    ``pci_address`` is QEMU's device path (``0000:00:02.0``, or with one ``:SS.F`` per
    bridge). ``bars`` is empty while the device sits behind a bridge the firmware has not
    numbered yet. ``vram`` is the framebuffer RAMBlock of the VGA flavours.
    """

    qdev_id: str | None
    driver: str
    qom_path: str
    pci_address: str
    hostmem_size: int
    bars: tuple[BarWindow, ...]
    vram: RamBlock | None

    def __str__(self) -> str:
        head = f"{self.qdev_id or self.qom_path} {self.driver} at {self.pci_address}"
        if self.hostmem_size:
            head += f" hostmem {self.hostmem_size:#x}"
        lines = [head, *(f"  {bar}" for bar in self.bars)]
        if self.vram is not None:
            lines.append(f"  vram {self.vram}")
        return "\n".join(lines)


@dataclass(frozen=True)
class FlatRange:
    """One range of an address space's flat view (``info mtree -f``): the region that
    answers there, its kind as QEMU prints it ('ram', 'rom', 'romd', 'i/o', ...), the
    offset into that region, and whether the range is registered with KVM."""

    start: int
    size: int
    name: str
    kind: str
    offset: int
    kvm: bool

    def __str__(self) -> str:
        return (f"{self.start:#x}-{self.start + self.size - 1:#x} {self.kind} {self.name} "
                f"@{self.offset:#x}{' KVM' if self.kvm else ''}")


@dataclass(frozen=True)
class Layout:
    """A snapshot of a QEMU's memory layout; ``taken_at`` is the caller's clock (monotonic
    seconds) when discovery began. Ranges are (start, size) pairs. ``system_ram_hva`` is
    empty on QEMU < 8.0 (no HVAs); ``system_ram_gpa`` is where guest RAM was mapped then."""

    qemu_version: tuple[int, int, int]
    gpus: tuple[GpuDevice, ...]
    ramblocks: tuple[RamBlock, ...]
    system_ram_hva: tuple[tuple[int, int], ...]
    system_ram_gpa: tuple[tuple[int, int], ...]
    taken_at: float
    flat: tuple[FlatRange, ...] = ()

    @property
    def host_addresses(self) -> bool:
        """True if QEMU reports RAMBlock host addresses (>= 8.0)."""
        return any(block.hva is not None for block in self.ramblocks)

    def ramblock_meeting(self, hva: int, size: int) -> RamBlock | None:
        """A RAMBlock whose host memory meets [hva, hva+size), or None (always None without
        HVAs)."""
        for block in self.ramblocks:
            if block.hva is not None and _overlaps(hva, hva + size, ((block.hva, block.max_length),)):
                return block
        return None

    def with_vram_hva(self, name: str, hva: int) -> Layout:
        """This layout with the host address of vram RAMBlock ``name`` filled in."""
        def known(block: RamBlock | None) -> RamBlock | None:
            return replace(block, hva=hva) if block is not None and block.name == name else block
        return replace(self, ramblocks=tuple(known(b) or b for b in self.ramblocks),
                       gpus=tuple(replace(gpu, vram=known(gpu.vram)) for gpu in self.gpus))

    def gpu_bar_at(self, gpa: int, size: int) -> tuple[GpuDevice, BarWindow] | None:
        """The virtio-gpu BAR whose window holds guest range [gpa, gpa+size), or None."""
        for gpu in self.gpus:
            for bar in gpu.bars:
                if bar.holds(gpa, size):
                    return gpu, bar
        return None

    def overlaps_system_ram(self, gpa: int, size: int, hva: int) -> bool:
        """True if the slot meets guest system RAM by guest address or by host address."""
        return _overlaps(gpa, gpa + size, self.system_ram_gpa) or \
            _overlaps(hva, hva + size, self.system_ram_hva)

    def __str__(self) -> str:
        ram = ", ".join(f"{start:#x}+{size:#x}" for start, size in self.system_ram_gpa)
        hva = ", ".join(f"{start:#x}+{size:#x}" for start, size in self.system_ram_hva)
        return "\n".join([
            "QEMU {}.{}.{}".format(*self.qemu_version),
            f"guest RAM at {ram or 'nowhere'}; host {hva or 'unknown (no HVAs before QEMU 8.0)'}",
            *(str(gpu) for gpu in self.gpus),
            *(f"RAMBlock {block}" for block in self.ramblocks),
        ])


def is_gpu_driver(qom_type: str) -> bool:
    """True for the QOM type of a virtio-gpu PCI device of any flavour."""
    return _GPU_DRIVER.match(qom_type) is not None


def is_vga_driver(driver: str) -> bool:
    """True for the VGA flavours (virtio-vga, virtio-vga-gl, vhost-user-vga, ...)."""
    return "vga" in driver.split("-")


def gpu_children(listing: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """(name, driver) of the virtio-gpu devices in a ``qom-list`` of a container."""
    found = []
    for prop in listing:
        child = _CHILD.match(prop["type"])
        if child and is_gpu_driver(child.group(1)):
            found.append((prop["name"], child.group(1)))
    return found


def device_path(root_bus: int, hops: Sequence[str]) -> str:
    """QEMU's device path from a root bus number and each hop's 'SS.F', root first."""
    return ":".join([f"0000:{root_bus:02x}", *hops])


def parse_version(answer: Mapping[str, Any]) -> tuple[int, int, int]:
    """(major, minor, micro) from a ``query-version`` answer.

    :raise ValueError: When the answer does not have query-version's shape.
    """
    try:
        qemu = answer["qemu"]
        return int(qemu["major"]), int(qemu["minor"]), int(qemu["micro"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"query-version answer not understood: {err!r}") from None


def _bar(region: Mapping[str, Any]) -> BarWindow:
    address = int(region["address"])
    return BarWindow(bar=int(region["bar"]), address=None if address in _UNASSIGNED else address,
                     size=int(region["size"]), kind="other",
                     mem64=bool(region.get("mem_type_64")), prefetch=bool(region.get("prefetch")))


def _functions(devices: Iterable[Mapping[str, Any]], root_bus: int,
               above: tuple[str, ...]) -> Iterator[PciFunction]:
    for dev in devices:
        hops = (*above, f"{dev['slot']:02x}.{dev['function']:x}")
        yield PciFunction(dev_path=device_path(root_bus, hops), vendor=dev["id"]["vendor"],
                          device=dev["id"]["device"],
                          bars=tuple(_bar(r) for r in dev["regions"] if r["type"] == "memory"))
        yield from _functions(dev.get("pci_bridge", {}).get("devices", ()), root_bus, hops)


def parse_pci(answer: Iterable[Mapping[str, Any]]) -> tuple[PciFunction, ...]:
    """Every PCI function of a ``query-pci`` answer, bridges walked.

    :raise ValueError: When the answer does not have query-pci's shape.
    """
    try:
        return tuple(function for bus in answer
                     for function in _functions(bus["devices"], int(bus["bus"]), ()))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"query-pci answer not understood: {err!r}") from None


def parse_ramblocks(text: str) -> tuple[RamBlock, ...]:
    """The RAMBlocks of ``info ramblock`` (with HVAs from QEMU 8.0, else hva None).

    :raise ValueError: When a line is neither the header nor a RAMBlock.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].lstrip().startswith("Block Name"):
        raise ValueError(f"info ramblock: no header in {text[:80]!r}")
    blocks = []
    for line in lines[1:]:
        row = _RAMBLOCK_ROW.match(line)
        if row is None:
            raise ValueError(f"info ramblock: unreadable line {line!r}")
        hva = row.group("hva")
        blocks.append(RamBlock(name=row.group("name"), offset=int(row.group("offset"), 16),
                               used_length=int(row.group("used"), 16),
                               max_length=int(row.group("total"), 16),
                               hva=None if hva is None else int(hva, 16)))
    return tuple(blocks)


def parse_flat_view(text: str, address_space: str = "memory") -> tuple[FlatRange, ...]:
    """The flat view of ``address_space`` in ``info mtree -f``.

    :raise ValueError: When no flat view serves that address space, or a range line
        cannot be read.
    """
    views = text.split("FlatView #")
    marker = f' AS "{address_space}",'
    view = next((v for v in views if any(line.startswith(marker) for line in v.splitlines())),
                None)
    if view is None:
        raise ValueError(f"info mtree -f: no flat view of address space {address_space!r}")
    ranges = []
    for line in view.splitlines()[1:]:
        if not line.startswith("  ") or "No rendered FlatView" in line:
            continue
        row = _FLAT_ROW.match(line)
        if row is None:
            raise ValueError(f"info mtree -f: unreadable range {line!r}")
        start = int(row.group("start"), 16)
        ranges.append(FlatRange(start=start, size=int(row.group("last"), 16) + 1 - start,
                                name=row.group("name"), kind=row.group("kind"),
                                offset=int(row.group("offset") or "0", 16),
                                kvm=row.group("kvm") is not None))
    return tuple(ranges)


def _classify(bars: tuple[BarWindow, ...], driver: str, hostmem: int) -> tuple[BarWindow, ...]:
    """Kinds of a GPU's BARs: hostmem is the one 64-bit prefetchable BAR of exactly the
    hostmem size (none if several fit: the guard must be sure); vram is BAR 0 of the VGA
    flavours."""
    fits = [b.bar for b in bars if hostmem and b.size == hostmem and b.mem64 and b.prefetch]
    hostmem_bar = fits[0] if len(fits) == 1 else None
    vram_bar = 0 if is_vga_driver(driver) else None
    return tuple(replace(b, kind="hostmem" if b.bar == hostmem_bar else
                         "vram" if b.bar == vram_bar else "other") for b in bars)


def _system_ram_names(memdevs: Iterable[str]) -> frozenset[str]:
    """RAMBlock/region names of memory backends: the id, or the canonical path on
    machine types that set x-use-canonical-path-for-ramblock-id."""
    return frozenset(name for ident in memdevs for name in (ident, f"/objects/{ident}"))


def build_layout(version: tuple[int, int, int], gpus: Iterable[QomGpu],
                 pci: Iterable[PciFunction], ramblocks: Sequence[RamBlock],
                 flat: Sequence[FlatRange], memdevs: Iterable[str],
                 taken_at: float) -> Layout:
    """The layout from QEMU's answers: GPUs matched to their PCI functions by device path,
    BARs classified, vram RAMBlocks found by name, guest RAM = the memory backends'
    RAMBlocks (``memdevs``: ids from query-memdev) and where the flat view maps them.

    :raise ValueError: When a GPU's address holds another device in query-pci, or no
        RAMBlock belongs to a memory backend: guest RAM would be unknown, and nothing could
        be proven not to overlap it.
    """
    functions = {f.dev_path: f for f in pci}
    blocks = {b.name: b for b in ramblocks}
    devices = []
    for gpu in gpus:
        function = functions.get(gpu.pci_address)
        if function and (function.vendor, function.device) != VIRTIO_GPU_PCI_ID:
            raise ValueError(f"{gpu.qom_path} ({gpu.driver}) is at {gpu.pci_address} in QOM, "
                             f"but query-pci has device {function.vendor:04x}:"
                             f"{function.device:04x} there")
        bars = function.bars if function else ()
        devices.append(GpuDevice(
            qdev_id=gpu.qdev_id, driver=gpu.driver, qom_path=gpu.qom_path,
            pci_address=gpu.pci_address, hostmem_size=gpu.hostmem,
            bars=_classify(bars, gpu.driver, gpu.hostmem),
            vram=blocks.get(f"{gpu.pci_address}/vga.vram")))
    ram_names = _system_ram_names(memdevs)
    ram_blocks = [b for b in ramblocks if b.name in ram_names]
    if not ram_blocks:
        raise ValueError("no RAMBlock belongs to a memory backend "
                         f"(backends: {sorted(ram_names)}; blocks: {sorted(blocks)})")
    return Layout(
        qemu_version=version, gpus=tuple(devices), ramblocks=tuple(ramblocks),
        system_ram_hva=tuple((b.hva, b.max_length) for b in ram_blocks if b.hva is not None),
        system_ram_gpa=tuple((r.start, r.size) for r in flat if r.name in ram_names),
        taken_at=taken_at, flat=tuple(flat))


def learn_vram_hva(layout: Layout, live: Iterable[tuple[int, int, int]]) -> int | None:
    """vram's host address where QEMU does not report it (< 8.0), proven by the flat view.

    ``live`` are (gpa, size, hva) of the memslots that existed for the whole time the
    snapshot was taken (created before it began, not deleted or changed since). A flat range
    of vram registered with KVM is exactly such a slot's memory, at the range's offset into
    vram: the slot's host address minus that offset is vram's. Only with one vga.vram
    RAMBlock in the VM (flat ranges name the region, not the device), and only when every
    such range agrees; else None.
    """
    blocks = [block for block in layout.ramblocks if block.name.endswith("/vga.vram")]
    if len(blocks) != 1 or blocks[0].hva is not None:
        return None
    region = blocks[0].name.rpartition("/")[2]
    slots = {(gpa, size): hva for gpa, size, hva in live}
    bases = {slots[r.start, r.size] - r.offset for r in layout.flat
             if r.name == region and r.kvm and (r.start, r.size) in slots}
    return bases.pop() if len(bases) == 1 else None
