"""`ncdma enable` and `ncdma disable`: opt a defined domain in or out, through libvirt's API.

Enabling adds (or updates) the <ncdma:ncdma> metadata and points <emulator> at ncdma's
wrapper, remembering the original emulator in the metadata; disabling restores the
domain exactly as it was. Both edit the persistent definition only: a running domain
picks the change up at its next start. Never called from a hook.
"""

from __future__ import annotations

from collections.abc import Mapping

import libvirt
from lxml import etree

from ncdma.errors import DomainStateError, DomainXmlError
from ncdma.model.policy import ELEMENT, NAMESPACE, PREFIX, Policy, parse_policy
from ncdma.virt.connect import libvirt_error
from ncdma.virt.xmldoc import parse_xml, xml_text

_XML_FLAGS = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


def _emulator_element(root: etree._Element) -> etree._Element:
    element = root.find("devices/emulator")
    if element is None:
        raise DomainXmlError("the domain has no <emulator>", "define it with an explicit emulator")
    return element


def enable_xml(xml: str, options: Mapping[str, str], wrapper: str) -> tuple[str, Policy]:
    """The domain XML with ncdma enabled: ``options`` update the existing policy, if any.

    :raise PolicyError: When the resulting policy is invalid.
    """
    root = parse_xml(xml)
    emulator = _emulator_element(root)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        root.insert(_metadata_position(root), metadata)
    element = metadata.find(ELEMENT)
    if element is None:
        element = etree.SubElement(metadata, ELEMENT, nsmap={PREFIX: NAMESPACE})
    attributes = dict(element.attrib)
    attributes.update(options)
    if emulator.text != wrapper:
        attributes["emulator"] = emulator.text or ""
    policy = parse_policy(attributes)
    element.attrib.clear()
    element.attrib.update(policy.attributes())
    emulator.text = wrapper
    return xml_text(root), policy


def _metadata_position(root: etree._Element) -> int:
    """Where libvirt puts <metadata>: after name, uuid, genid, title and description."""
    position = 0
    for index, child in enumerate(root):
        if child.tag in ("name", "uuid", "genid", "title", "description"):
            position = index + 1
    return position


def disable_xml(xml: str) -> str:
    """The domain XML with ncdma's metadata removed and the original emulator back.

    :raise DomainStateError: When the domain is not enabled.
    """
    root = parse_xml(xml)
    metadata = root.find("metadata")
    element = metadata.find(ELEMENT) if metadata is not None else None
    if metadata is None or element is None:
        raise DomainStateError("ncdma is not enabled on this domain", "nothing to disable")
    original = element.get("emulator")
    metadata.remove(element)
    if len(metadata) == 0:
        root.remove(metadata)
    if original:
        _emulator_element(root).text = original
    return xml_text(root)


def _persistent_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    try:
        domain = conn.lookupByName(name)
        persistent = domain.isPersistent()
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"cannot find domain {name}") from None
    if not persistent:
        raise DomainStateError(f"domain {name} is transient",
                               "define it with `virsh define` first", name)
    return domain


def _redefine(conn: libvirt.virConnect, name: str, xml: str) -> bool:
    """Define the new XML; return whether the domain is running (change applies at next start)."""
    try:
        conn.defineXML(xml)
        return bool(conn.lookupByName(name).isActive())
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"cannot redefine domain {name}") from None


def enable_domain(conn: libvirt.virConnect, name: str, options: Mapping[str, str],
                  wrapper: str) -> tuple[Policy, bool]:
    """Enable ncdma on a defined domain; return its policy and whether it is running."""
    domain = _persistent_domain(conn, name)
    xml, policy = enable_xml(domain.XMLDesc(_XML_FLAGS), options, wrapper)
    return policy, _redefine(conn, name, xml)


def disable_domain(conn: libvirt.virConnect, name: str) -> bool:
    """Disable ncdma on a defined domain; return whether it is running."""
    domain = _persistent_domain(conn, name)
    return _redefine(conn, name, disable_xml(domain.XMLDesc(_XML_FLAGS)))
