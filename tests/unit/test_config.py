"""Validation of the KVM_MEM_NON_COHERENT_DMA value."""

import pytest

from ncdma.errors import UsageError
from ncdma.settings import parse_flag_value


@pytest.mark.parametrize("text, value", [("8", 8), ("0x8", 8), ("0x10", 16), ("0x80000000", 1 << 31)])
def test_valid_single_bits(text, value) -> None:
    assert parse_flag_value(text) == value


@pytest.mark.parametrize("text, problem", [
    ("eight", "not a number"), ("", "not a number"), ("0", "single bit"), ("-8", "single bit"),
    ("12", "single bit"), ("0x100000000", "single bit"),
    ("1", "upstream memslot flag"), ("0x2", "upstream"), ("4", "upstream"),
])
def test_invalid_values_name_the_problem_and_the_fix(text, problem) -> None:
    with pytest.raises(UsageError) as caught:
        parse_flag_value(text)
    assert problem in caught.value.message
    assert "8" in caught.value.hint


def test_upstream_flags_in_settings_are_kvms() -> None:
    """settings (base) spells the upstream bits without importing kvm; they must agree."""
    from ncdma.kvm import abi
    from ncdma.settings import UPSTREAM_MEMSLOT_FLAGS

    assert UPSTREAM_MEMSLOT_FLAGS == (abi.KVM_MEM_LOG_DIRTY_PAGES | abi.KVM_MEM_READONLY
                                      | abi.KVM_MEM_GUEST_MEMFD)
