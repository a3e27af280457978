"""The example virtio-vga domain runs under KVM on a lab host, with the BARs ncdma works on."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.lab

MiB = 1024 * 1024
VIRTIO_VENDOR, VIRTIO_GPU = 0x1AF4, 0x1050


def virtio_vga(domain, host: str) -> dict:
    """The query-pci record of the domain's virtio-vga."""
    devices = [dev for bus in domain.qmp(host, "query-pci") for dev in bus["devices"]
               if (dev["id"]["vendor"], dev["id"]["device"]) == (VIRTIO_VENDOR, VIRTIO_GPU)]
    assert len(devices) == 1, devices
    return devices[0]


def test_example_xml_validates(domain) -> None:
    domain.lab.host("h1").run(["virt-xml-validate", domain.xml, "domain"], check=True)


def test_domain_runs_under_kvm(domain) -> None:
    domain.start("h1")
    assert domain.where() == ["h1"]
    assert domain.qmp("h1", "query-kvm") == {"enabled": True, "present": True}
    xml = domain.lab.host("h1").virsh("dumpxml", domain.name).stdout
    assert "<domain type='kvm'" in xml


def test_virtio_vga_has_hostmem_and_vram_bars(domain) -> None:
    domain.start("h1")
    device = virtio_vga(domain, "h1")
    assert device["qdev_id"] == "video0"
    assert device["class_info"]["class"] == 0x0300  # VGA: virtio-vga, not virtio-gpu-pci
    bars = {region["bar"]: region for region in device["regions"]}
    assert bars[4]["size"] == 64 * MiB  # hostmem, set through <qemu:override>
    assert bars[4]["prefetch"] and bars[4]["mem_type_64"]
    assert bars[0]["size"] == 8 * MiB  # vga.vram


def test_seabios_assigns_the_bars(domain) -> None:
    """The firmware runs under KVM: it gives the BARs guest-physical addresses."""
    domain.start("h1")
    deadline = time.monotonic() + 20
    while True:
        bars = {r["bar"]: r["address"] for r in virtio_vga(domain, "h1")["regions"]}
        if bars[0] != -1 and bars[4] != -1:
            break
        assert time.monotonic() < deadline, f"BARs still unassigned: {bars}"
        time.sleep(0.2)
    assert bars[4] % (64 * MiB) == 0  # a BAR is aligned to its size
