"""`ncdma enable` and `ncdma disable`: opt a defined domain in or out, through libvirt's API.

Enabling adds (or updates) the <ncdma:ncdma> metadata and points <emulator> at ncdma's
wrapper, remembering the original emulator in the metadata; disabling restores the
domain exactly as it was. Both edit the persistent definition only: a running domain
picks the change up at its next start. Never called from a hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import libvirt
from lxml import etree

from ncdma.errors import DomainStateError, DomainXmlError
from ncdma.model.policy import ELEMENT, NAMESPACE, PREFIX, Policy, parse_policy
from ncdma.virt.connect import libvirt_error
from ncdma.virt.lookup import lookup_domain
from ncdma.virt.xmldoc import canonical, parse_xml, xml_text

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


def _persistent_domain(conn: libvirt.virConnect, reference: str) -> libvirt.virDomain:
    domain = lookup_domain(conn, reference)
    try:
        persistent = domain.isPersistent()
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"cannot read domain {reference}") from None
    if not persistent:
        raise DomainStateError(f"domain {domain.name()} is transient",
                               "define it with `virsh define` first", domain.name())
    return domain


@dataclass(frozen=True)
class Change:
    """What `ncdma enable`/`disable` did to one domain's persistent definition."""

    name: str
    uuid: str
    changed: bool  # False: the definition already was what was asked, it was not redefined
    running: bool  # the change applies at its next start
    policy: Policy | None = None  # enable: the policy now in the definition


def _apply(conn: libvirt.virConnect, domain: libvirt.virDomain, old: str, new: str,
           policy: Policy | None) -> Change:
    """Define ``new`` unless it says what ``old`` says (then nothing is redefined)."""
    changed = canonical(new) != canonical(old)
    try:
        if changed:
            conn.defineXML(new)
        running = bool(domain.isActive())
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"cannot redefine domain {domain.name()}") from None
    return Change(domain.name(), domain.UUIDString(), changed, running, policy)


def enable_domain(conn: libvirt.virConnect, reference: str, options: Mapping[str, str],
                  wrapper: str) -> Change:
    """Enable ncdma on a defined domain (an ID, UUID or name), or update its policy."""
    domain = _persistent_domain(conn, reference)
    old = domain.XMLDesc(_XML_FLAGS)
    new, policy = enable_xml(old, options, wrapper)
    return _apply(conn, domain, old, new, policy)


def disable_domain(conn: libvirt.virConnect, reference: str) -> Change:
    """Disable ncdma on a defined domain (an ID, UUID or name), restoring its definition."""
    domain = _persistent_domain(conn, reference)
    old = domain.XMLDesc(_XML_FLAGS)
    try:
        new = disable_xml(old)
    except DomainStateError as err:
        raise DomainStateError(f"{err.message}: {domain.name()}", "if its <emulator> is "
                               "ncdma's wrapper, set the original one with `virsh edit`",
                               domain.name()) from None
    return _apply(conn, domain, old, new, None)
