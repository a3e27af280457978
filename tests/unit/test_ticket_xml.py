"""The ticket's place in the migratable XML: ncdma's metadata element, and nowhere else."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from ncdma.model.policy import ELEMENT
from ncdma.virt.domain import parse_domain
from ncdma.virt.ticket import ticket_of, with_ticket, without_ticket

REPO = Path(__file__).parents[2]
EXAMPLE = (REPO / "xml/examples/virtio-vga-opted-in.xml").read_bytes()
SCHEMA = etree.RelaxNG(etree.parse(str(REPO / "xml/ncdma-metadata.rng")))
TOKEN = "ab" * 32


def test_the_ticket_travels_inside_the_policy_element_and_the_schema_accepts_it() -> None:
    xml = with_ticket(EXAMPLE, TOKEN)
    assert ticket_of(xml.encode()) == TOKEN
    [element] = etree.fromstring(xml.encode()).iter(ELEMENT)
    assert SCHEMA.validate(etree.ElementTree(element)), SCHEMA.error_log
    assert parse_domain(xml.encode()).policy == parse_domain(EXAMPLE).policy


def test_a_new_ticket_replaces_an_old_one_and_stripping_restores_the_document() -> None:
    twice = with_ticket(with_ticket(EXAMPLE, "cd" * 32).encode(), TOKEN)
    assert ticket_of(twice.encode()) == TOKEN and twice.count("ticket") == 2  # open + close
    stripped = without_ticket(twice.encode())
    assert ticket_of(stripped.encode()) is None
    assert parse_domain(stripped.encode()) == parse_domain(EXAMPLE)


def test_no_ticket_and_no_metadata_read_as_none() -> None:
    assert ticket_of(EXAMPLE) is None
    assert ticket_of(b"<domain><name>x</name></domain>") is None
