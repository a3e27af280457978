"""The migration ticket's place in a domain XML: ``<ncdma:ticket>`` inside the policy element.

`ncdma migrate` puts it into the migratable XML it hands libvirt; the destination's
``migrate`` hook reads it, and strips it from the XML libvirt keeps, so a running domain's
definition never carries one.
"""

from __future__ import annotations

from lxml import etree

from ncdma.model.policy import ELEMENT, NAMESPACE
from ncdma.virt.xmldoc import parse_xml, xml_text

TICKET = f"{{{NAMESPACE}}}ticket"


def ticket_of(data: bytes) -> str | None:
    """The ticket the domain XML ``data`` carries, or None."""
    element = parse_xml(data).find(f"metadata/{ELEMENT}/{TICKET}")
    return None if element is None else (element.text or "").strip()


def _policy_element(root: etree._Element) -> etree._Element | None:
    return root.find(f"metadata/{ELEMENT}")


def without_ticket(data: bytes) -> str:
    """The domain XML ``data`` without any ticket."""
    root = parse_xml(data)
    for element in root.findall(f"metadata/{ELEMENT}/{TICKET}"):
        element.getparent().remove(element)
    return xml_text(root)


def with_ticket(data: bytes, token: str) -> str:
    """The domain XML ``data`` carrying ticket ``token`` (replacing any other) in its policy
    element; an XML without one is returned unchanged."""
    root = parse_xml(without_ticket(data))
    policy = _policy_element(root)
    if policy is not None:
        etree.SubElement(policy, TICKET).text = token
    return xml_text(root)
