"""A libvirt domain as ncdma sees it (parsed from its XML by :mod:`ncdma.virt.domain`)."""

from __future__ import annotations

from dataclasses import dataclass

from ncdma.model.policy import Policy


@dataclass(frozen=True)
class VideoDevice:
    """One virtio-gpu device as the domain XML describes it (QEMU's view of the same device
    is :class:`ncdma.model.layout.GpuDevice`).

    ``qemu_model`` is the QEMU device libvirt will create (the guard confirms it over
    QMP); ``hostmem`` is the size of the host-visible BAR in bytes, or 0 when unset.
    """

    alias: str
    qemu_model: str
    hostmem: int

    @property
    def on_pci(self) -> bool:
        """A PCI device (BARs exist): the VGA flavours and the -pci proxies; not -ccw (s390x)
        or -device (virtio-mmio)."""
        return self.qemu_model.endswith(("-pci", "vga", "vga-gl"))


@dataclass(frozen=True)
class Domain:
    """A libvirt domain as ncdma sees it. ``policy`` is None when the domain does not opt in."""

    name: str
    uuid: str
    emulator: str | None
    gpus: tuple[VideoDevice, ...]
    policy: Policy | None
    dac_label: str | None = None  # libvirt's <seclabel model='dac'><label>: QEMU's uid:gid
    # displays whose old guest drivers map VRAM uncached (bochs-drm, stdvga, cirrus), as the
    # XML names them: guest PAT honored for the whole VM would make them ~23x slower
    uncached_displays: tuple[str, ...] = ()
