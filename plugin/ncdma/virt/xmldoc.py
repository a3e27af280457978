"""The one way ncdma parses XML (libvirt's domain documents): hardened, bounded, lxml.

No entity expansion, no DTD loading, no network, no huge trees, and at most
:data:`MAX_XML` bytes: domain XML comes from libvirt, but its content from whoever
defined the domain.
"""

from __future__ import annotations

from lxml import etree

from ncdma.errors import DomainXmlError

MAX_XML = 16 * 1024 * 1024


def parse_xml(xml: str | bytes, remove_comments: bool = False) -> etree._Element:
    """The root element of ``xml``.

    :raise DomainXmlError: When the document is too large or not well-formed XML.
    """
    data = xml.encode() if isinstance(xml, str) else xml
    if len(data) > MAX_XML:
        raise DomainXmlError(f"domain XML is {len(data)} bytes", "libvirt never sends that much")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             load_dtd=False, remove_comments=remove_comments)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise DomainXmlError(f"domain XML is not well-formed: {err}",
                             "pass the XML libvirt gives") from None


def xml_text(root: etree._Element) -> str:
    """The document under ``root`` as text."""
    return str(etree.tostring(root, encoding="unicode"))


def canonical(xml: str) -> bytes:
    """``xml`` in canonical form (C14N): equal for documents that say the same."""
    return bytes(etree.tostring(parse_xml(xml), method="c14n"))
