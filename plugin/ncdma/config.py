"""Validation of ncdma's settings, shared by the command line and the configuration file."""

from __future__ import annotations

from ncdma.errors import UsageError
from ncdma.kvm import abi

_HIGHEST_FLAG_BIT = 31  # memslot flags are a __u32


def parse_flag_value(text: str) -> int:
    """Parse the KVM_MEM_NON_COHERENT_DMA value: one bit, 3..31, decimal or 0x-hex.

    :raise UsageError: When the text is not such a value.
    """
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"flag value {text!r} is not a number",
                         "give one bit as decimal or hex, for example 8 or 0x8") from None
    if value <= 0 or value & (value - 1) or value.bit_length() - 1 > _HIGHEST_FLAG_BIT:
        raise UsageError(f"flag value {text!r} is not a single bit of a 32-bit memslot flags word",
                         "give one bit, for example 8 (1 << 3, the series' value)")
    if value & abi.UPSTREAM_MEMSLOT_FLAGS:
        raise UsageError(f"flag value {text!r} is an upstream memslot flag "
                         "(LOG_DIRTY_PAGES, READONLY or GUEST_MEMFD)",
                         "give the bit your patched kernel uses for KVM_MEM_NON_COHERENT_DMA, "
                         "by default 8")
    return value
