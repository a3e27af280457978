"""The domain XML model: virtio-gpu devices in every form libvirt expresses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ncdma.errors import DomainXmlError, PolicyError
from ncdma.model.policy import Bar, MigrationPolicy, PolicyMode
from ncdma.virt.domain import parse_domain, parse_size

EXAMPLES = Path(__file__).parents[2] / "xml/examples"


def _domain(devices: str = "", extra: str = "", metadata: str = "") -> str:
    return (f"<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
            f"<name>d</name><uuid>0b7e2a4c-1f2d-4d7a-9a51-0c3b6f1e2d44</uuid>"
            f"<metadata>{metadata}</metadata><devices><emulator>/usr/bin/qemu</emulator>"
            f"{devices}</devices>{extra}</domain>")


def test_lab_example_is_a_virtio_vga_with_64m_hostmem_and_no_policy() -> None:
    domain = parse_domain((EXAMPLES / "lab-virtio-vga.xml").read_bytes())
    assert domain.policy is None
    [gpu] = domain.gpus
    assert (gpu.alias, gpu.qemu_model, gpu.hostmem) == ("video0", "virtio-vga", 64 << 20)


def test_opted_in_example() -> None:
    domain = parse_domain((EXAMPLES / "virtio-vga-opted-in.xml").read_bytes())
    assert domain.policy.bars == {Bar.VRAM} and domain.policy.migration is MigrationPolicy.COPY
    assert domain.policy.emulator == "/usr/bin/qemu-system-x86_64"
    assert domain.emulator == "/usr/local/libexec/ncdma/ncdma-qemu"


def test_secondary_virtio_gpu_with_user_alias_blob_and_string_hostmem() -> None:
    domain = parse_domain((EXAMPLES / "virtio-gpu-pci-opted-in.xml").read_bytes())
    [gpu] = domain.gpus
    assert (gpu.alias, gpu.qemu_model, gpu.hostmem) == ("ua-gpu", "virtio-gpu-pci", 256 << 20)
    assert domain.policy.require and domain.policy.mode is PolicyMode.ENFORCE


def test_commandline_device() -> None:
    domain = parse_domain((EXAMPLES / "commandline-virtio-gpu.xml").read_bytes())
    [gpu] = domain.gpus
    assert (gpu.alias, gpu.qemu_model, gpu.hostmem) == ("gpu0", "virtio-gpu-pci", 1 << 30)


def test_json_commandline_device_and_gl_variants() -> None:
    args = ("<qemu:commandline><qemu:arg value='-device'/><qemu:arg value="
            "'{\"driver\": \"virtio-gpu-gl-pci\", \"id\": \"g\", \"hostmem\": 1048576, "
            "\"blob\": true}'/></qemu:commandline>")
    [gpu] = parse_domain(_domain(extra=args)).gpus
    assert (gpu.qemu_model, gpu.hostmem) == ("virtio-gpu-gl-pci", 1 << 20)


def test_accel3d_primary_is_virtio_vga_gl() -> None:
    video = ("<video><model type='virtio'><acceleration accel3d='yes'/></model>"
             "<alias name='video0'/><address type='pci' domain='0x0000' bus='0x00' "
             "slot='0x02' function='0x0'/></video>")
    [gpu] = parse_domain(_domain(video)).gpus
    assert gpu.qemu_model == "virtio-vga-gl"


def test_non_virtio_video_and_other_devices_are_ignored() -> None:
    devices = "<video><model type='qxl'/></video><video><model type='virtio'/></video>"
    args = ("<qemu:commandline><qemu:arg value='-device'/><qemu:arg value='e1000,id=n'/>"
            "</qemu:commandline>")
    [gpu] = parse_domain(_domain(devices, args)).gpus
    assert (gpu.alias, gpu.qemu_model) == ("video1", "virtio-gpu-pci")


@pytest.mark.parametrize("text, size", [("67108864", 64 << 20), ("64M", 64 << 20),
                                        ("1G", 1 << 30), ("64MiB", 64 << 20), ("4k", 4096)])
def test_sizes(text, size) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("xml, problem", [
    ("<domain", "not well-formed"),
    ("<vm><name>x</name></vm>", "not <domain>"),
    ("<domain/>", "no <name>"),
    (_domain("<video><model type='virtio'/></video>", "<qemu:override><qemu:device "
             "alias='video0'><qemu:frontend><qemu:property name='hostmem' value='lots'/>"
             "</qemu:frontend></qemu:device></qemu:override>"), "hostmem 'lots'"),
    ("<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/shadow'>]><domain><name>&e;</name></domain>",
     "no <name>"),
])
def test_bad_xml_is_a_clear_error(xml, problem) -> None:
    with pytest.raises(DomainXmlError) as caught:
        parse_domain(xml)
    assert problem in caught.value.message


def test_two_policy_elements_are_refused() -> None:
    element = "<n:ncdma xmlns:n='urn:ncdma:domain:1'/>"
    with pytest.raises(PolicyError, match="2 <ncdma:ncdma> elements"):
        parse_domain(_domain(metadata=element * 2))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_input_never_escapes_as_anything_but_a_domain_error(data) -> None:
    try:
        parse_domain(data)
    except DomainXmlError:
        pass


OPTED_IN = _domain("<video><model type='virtio'/></video>",
                   metadata="<n:ncdma xmlns:n='urn:ncdma:domain:1' bars='vram'/>")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=len(OPTED_IN) - 1))
def test_truncated_xml_is_a_domain_error(cut) -> None:
    with pytest.raises(DomainXmlError):
        parse_domain(OPTED_IN[:cut])


def _video(model: str = "<model type='virtio'/>", extra: str = "") -> str:
    return f"<video>{model}{extra}</video>"


@pytest.mark.parametrize("arch, machine, address, expected", [
    ("x86_64", "pc", "", "virtio-vga"),
    ("x86_64", "q35", "<address type='pci' domain='0' bus='0' slot='1' function='0'/>",
     "virtio-vga"),
    ("aarch64", "virt", "", "virtio-gpu-pci"),
    ("riscv64", "virt", "", "virtio-gpu-pci"),
    ("s390x", "s390-ccw-virtio", "", "virtio-gpu-ccw"),
    ("aarch64", "virt", "<address type='virtio-mmio'/>", "virtio-gpu-device"),
])
def test_the_qemu_device_follows_libvirts_rule_for_arch_and_bus(arch, machine, address,
                                                                expected) -> None:
    xml = _domain(_video(extra=address),
                  extra=f"<os><type arch='{arch}' machine='{machine}'>hvm</type></os>")
    [gpu] = parse_domain(xml).gpus
    assert gpu.qemu_model == expected


def test_libvirts_vhostuser_spelling_is_a_vhost_user_device() -> None:
    primary = _video("<model type='virtio' primary='yes'/>", "<driver name='vhostuser'/>")
    second = _video(extra="<driver name='vhostuser'/>")
    gpus = parse_domain(_domain(primary + second)).gpus
    assert [gpu.qemu_model for gpu in gpus] == ["vhost-user-vga", "vhost-user-gpu-pci"]


def test_the_primary_video_is_video0_wherever_it_is_listed() -> None:
    cirrus = "<video><model type='cirrus'/></video>"
    primary = _video("<model type='virtio' primary='yes'/>")
    [gpu] = parse_domain(_domain(cirrus + primary)).gpus
    assert (gpu.alias, gpu.qemu_model) == ("video0", "virtio-vga")


@pytest.mark.parametrize("value", ["driver=virtio-gpu-pci,id=g1,hostmem=1.5G",
                                   "id=g1,driver=virtio-gpu-pci,hostmem=0x60000000"])
def test_commandline_device_with_driver_given_as_a_key(value) -> None:
    extra = ("<qemu:commandline><qemu:arg value='-device'/>"
             f"<qemu:arg value='{value}'/></qemu:commandline>")
    [gpu] = parse_domain(_domain(extra=extra)).gpus
    assert (gpu.alias, gpu.qemu_model, gpu.hostmem) == ("g1", "virtio-gpu-pci", 0x60000000)


def test_commandline_vga_virtio_is_a_virtio_vga() -> None:
    extra = ("<qemu:commandline><qemu:arg value='-vga'/><qemu:arg value='virtio'/>"
             "</qemu:commandline>")
    [gpu] = parse_domain(_domain(extra=extra)).gpus
    assert gpu.qemu_model == "virtio-vga"


@pytest.mark.parametrize("text, size", [("1.5G", 0x60000000), ("0x4000000", 64 << 20),
                                        ("64k", 64 << 10), ("0.5M", 512 << 10)])
def test_qemu_size_syntax(text, size) -> None:
    assert parse_size(text) == size


def test_a_fraction_of_a_byte_is_not_a_size() -> None:
    with pytest.raises(ValueError):
        parse_size("1.5")


def test_an_override_on_video0_goes_to_the_primary_even_when_it_is_listed_second() -> None:
    second = _video()
    primary = _video("<model type='virtio' primary='yes'/>")
    override = ("<qemu:override><qemu:device alias='video0'><qemu:frontend><qemu:property "
                "name='hostmem' type='unsigned' value='67108864'/></qemu:frontend></qemu:device>"
                "</qemu:override>")
    gpus = parse_domain(_domain(second + primary, override)).gpus
    assert [(gpu.alias, gpu.qemu_model, gpu.hostmem) for gpu in gpus] == \
        [("video0", "virtio-vga", 64 << 20), ("video1", "virtio-gpu-pci", 0)]


@pytest.mark.parametrize("video, os_type, problem", [
    (_video("<model type='virtio' device='virtio-gpu'/>"), "", "device='virtio-gpu'"),
    (_video(), "<os><type arch='mips64el' machine='malta'>hvm</type></os>", "mips64el"),
    (_video(), "<os><type arch='aarch64' machine='vexpress-a15'>hvm</type></os>",
     "vexpress-a15"),
])
def test_a_video_device_whose_qemu_device_cannot_be_told_is_said_so(video, os_type,
                                                                    problem) -> None:
    with pytest.raises(DomainXmlError) as caught:
        parse_domain(_domain(video, os_type))
    assert "cannot tell which QEMU device" in caught.value.message
    assert problem in caught.value.message


def test_an_address_tells_the_bus_on_any_machine() -> None:
    address = "<address type='virtio-mmio'/>"
    xml = _domain(_video(extra=address),
                  "<os><type arch='aarch64' machine='vexpress-a15'>hvm</type></os>")
    [gpu] = parse_domain(xml).gpus
    assert gpu.qemu_model == "virtio-gpu-device" and not gpu.on_pci


@pytest.mark.parametrize("arch, machine", [("aarch64", "virt"), ("riscv64", "virt"),
                                           ("s390x", "s390-ccw-virtio")])
def test_a_vram_policy_selects_nothing_where_there_is_no_vga(arch, machine) -> None:
    from ncdma.model.plan import taggable_devices
    xml = _domain(_video(), f"<os><type arch='{arch}' machine='{machine}'>hvm</type></os>",
                  metadata="<n:ncdma xmlns:n='urn:ncdma:domain:1' bars='vram'/>")
    domain = parse_domain(xml)
    assert len(domain.gpus) == 1 and taggable_devices(domain.gpus, domain.policy.bars) == ()


def test_accel3d_with_vhostuser_follows_libvirt() -> None:
    video = _video("<model type='virtio' primary='yes' blob='on'><acceleration accel3d='yes'/>"
                   "</model>", "<driver name='vhostuser'/>")
    [gpu] = parse_domain(_domain(video)).gpus
    assert gpu.qemu_model == "vhost-user-vga"  # vhost-user has no -gl form


def _args(*values: str) -> str:
    return ("<qemu:commandline>" + "".join(f"<qemu:arg value='{value}'/>" for value in values)
            + "</qemu:commandline>")


@pytest.mark.parametrize("setting", ["virtio-vga.hostmem=64M",
                                     "driver=virtio-vga,property=hostmem,value=0x4000000"])
def test_a_global_hostmem_reaches_every_device_of_its_driver(setting) -> None:
    gpus = parse_domain(_domain(_video(), _args("-global", setting))).gpus
    assert [(gpu.qemu_model, gpu.hostmem) for gpu in gpus] == [("virtio-vga", 64 << 20)]


def test_a_set_hostmem_reaches_the_commandline_device_with_that_id() -> None:
    extra = _args("-device", "virtio-gpu-pci,id=g1", "-device", "virtio-gpu-pci,id=g2",
                  "-set", "device.g2.hostmem=1G")
    gpus = parse_domain(_domain(extra=extra)).gpus
    assert [(gpu.alias, gpu.hostmem) for gpu in gpus] == [("g1", 0), ("g2", 1 << 30)]


def test_a_device_own_hostmem_wins_over_a_global() -> None:
    extra = _args("-global", "virtio-gpu-pci.hostmem=1G", "-device",
                  "virtio-gpu-pci,id=g1,hostmem=64M")
    [gpu] = parse_domain(_domain(extra=extra)).gpus
    assert gpu.hostmem == 64 << 20


def test_a_set_does_not_reach_a_json_device() -> None:
    extra = _args("-device", '{"driver": "virtio-gpu-pci", "id": "g1"}',
                  "-set", "device.g1.hostmem=1G")
    [gpu] = parse_domain(_domain(extra=extra)).gpus
    assert gpu.hostmem == 0
