"""The policy parser and the RelaxNG schema agree, and errors name the attribute."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from ncdma.errors import PolicyError
from ncdma.model.policy import ELEMENT, NAMESPACE, Bar, MigrationPolicy, Policy, PolicyMode, parse_policy

SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).parents[2] / "xml/ncdma-metadata.rng")))


def _schema_accepts(attributes: dict[str, str]) -> bool:
    element = etree.Element(ELEMENT, nsmap={"ncdma": NAMESPACE})
    element.attrib.update(attributes)
    return SCHEMA.validate(etree.ElementTree(element))


def _parser_accepts(attributes: dict[str, str]) -> bool:
    try:
        parse_policy(attributes)
    except PolicyError:
        return False
    return True


def test_defaults() -> None:
    assert parse_policy({}) == Policy(PolicyMode.ENFORCE, False, MigrationPolicy.REFUSE,
                                      frozenset({Bar.HOSTMEM}), None)


def test_every_attribute() -> None:
    policy = parse_policy({"mode": "audit", "require": "yes", "migration": "copy",
                           "bars": "vram,hostmem", "emulator": "/usr/bin/qemu-system-x86_64"})
    assert policy.mode is PolicyMode.AUDIT and policy.require
    assert policy.bars == {Bar.VRAM, Bar.HOSTMEM}
    assert parse_policy(policy.attributes()) == policy


@pytest.mark.parametrize("attributes, named, allowed", [
    ({"mode": "enforced"}, "'mode'", "enforce, audit, off"),
    ({"require": "true"}, "'require'", "yes, no"),
    ({"migration": "live"}, "'migration'", "refuse, skip, copy, any"),
    ({"bars": "vram,vram"}, "'bars'", "hostmem, vram"),
    ({"bars": ""}, "'bars'", "hostmem, vram"),
    ({"emulator": "qemu"}, "'emulator'", "absolute path"),
    ({"colour": "blue"}, "'colour'", "allowed attributes"),
])
def test_errors_name_the_attribute_and_the_allowed_values(attributes, named, allowed) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(attributes)
    assert named in caught.value.message and allowed in caught.value.hint
    assert not _schema_accepts(attributes)


_VALUES = st.one_of(
    st.sampled_from(["enforce", "audit", "off", "yes", "no", "refuse", "skip", "copy", "any",
                     "hostmem", "vram", "hostmem,vram", "vram,hostmem", "/usr/bin/qemu",
                     "", "x" * 5000, "/a b", "hostmem,", "ENFORCE", "slot", "vm", "auto",
                     "VM"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
)
_NAMES = st.sampled_from(["mode", "require", "migration", "bars", "emulator", "method",
                          "allow_uncached_display", "other"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, max_size=7))
def test_parser_and_schema_accept_the_same_policies(attributes) -> None:
    assert _parser_accepts(attributes) == _schema_accepts(attributes)


def test_every_example_domain_policy_validates_against_the_schema() -> None:
    examples = sorted((Path(__file__).parents[2] / "xml/examples").glob("*.xml"))
    checked = 0
    for example in examples:
        for element in etree.parse(str(example)).iter(ELEMENT):
            assert SCHEMA.validate(etree.ElementTree(element)), (example.name, SCHEMA.error_log)
            checked += 1
    assert checked == 4, "the four opted-in examples"
