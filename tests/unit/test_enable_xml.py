"""The XML edits behind `ncdma enable` / `ncdma disable` (libvirt's side: tests/lab)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from ncdma.errors import NcdmaError, PolicyError
from ncdma.model.policy import Method, MigrationPolicy, PolicyMode
from ncdma.virt.domain import parse_domain
from ncdma.virt.enable import disable_xml, enable_xml

LAB = (Path(__file__).parents[2] / "xml/examples/lab-virtio-vga.xml").read_text()
WRAPPER = "/usr/local/libexec/ncdma/ncdma-qemu"


def _canonical(xml: str) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True)
    return etree.tostring(etree.fromstring(xml.encode(), parser), method="c14n")


def test_enable_adds_metadata_and_points_emulator_at_the_wrapper() -> None:
    xml, policy = enable_xml(LAB, {"bars": "vram"}, WRAPPER)
    domain = parse_domain(xml)
    assert domain.emulator == WRAPPER
    assert domain.policy == policy
    assert policy.emulator == "/usr/bin/qemu-system-x86_64" and policy.mode is PolicyMode.ENFORCE
    assert [child.tag for child in etree.fromstring(xml.encode())][:3] == ["name", "metadata",
                                                                          "memory"]


def test_enable_twice_updates_and_keeps_the_original_emulator() -> None:
    once, _ = enable_xml(LAB, {"bars": "vram"}, WRAPPER)
    twice, policy = enable_xml(once, {"migration": "copy"}, WRAPPER)
    assert policy.migration is MigrationPolicy.COPY and policy.bars == parse_domain(once).policy.bars
    assert policy.emulator == "/usr/bin/qemu-system-x86_64"


def test_enable_then_disable_round_trips() -> None:
    enabled, _ = enable_xml(LAB, {"mode": "audit", "require": "yes"}, WRAPPER)
    assert _canonical(disable_xml(enabled)) == _canonical(LAB)


def test_existing_metadata_of_other_tools_is_kept() -> None:
    other = LAB.replace("<memory", "<metadata><x:y xmlns:x='urn:x'>keep</x:y></metadata><memory")
    enabled, _ = enable_xml(other, {}, WRAPPER)
    assert "keep" in enabled
    assert _canonical(disable_xml(enabled)) == _canonical(other)


def test_bad_option_is_a_policy_error_and_nothing_changes() -> None:
    with pytest.raises(PolicyError, match="'bars'"):
        enable_xml(LAB, {"bars": "all"}, WRAPPER)


def test_disable_without_enable_is_an_error() -> None:
    with pytest.raises(NcdmaError, match="not enabled"):
        disable_xml(LAB)


def test_enable_method_vm_writes_it_and_a_later_enable_keeps_it() -> None:
    once, policy = enable_xml(LAB, {"method": "vm", "allow_uncached_display": "yes"}, WRAPPER)
    assert (policy.method, policy.allow_uncached_display) == (Method.VM, True)
    twice, policy = enable_xml(once, {"migration": "copy"}, WRAPPER)
    assert policy.method is Method.VM and parse_domain(twice).policy == policy
    back, policy = enable_xml(twice, {"method": "slot"}, WRAPPER)
    assert policy.method is Method.SLOT and "method=" not in back
