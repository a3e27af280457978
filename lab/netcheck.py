"""Which TCP ports something on this machine already listens on (the hosts share its network)."""
from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

LISTEN = "0A"


def listeners() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket; IPv6 ones as IPv6 text."""
    found = set()
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != LISTEN:
                continue
            address, port = fields[1].split(":")
            found.add((_address(address, family), int(port, 16)))
    return found


def busy(address: str, ports: Iterable[int]) -> list[tuple[str, int]]:
    """Listeners that would keep something from listening on address at any of ports."""
    mapped = f"::ffff:{address}"
    blocking = {address, "0.0.0.0", "::", mapped}
    wanted = set(ports)
    return sorted((a, p) for a, p in listeners() if p in wanted and a in blocking)


def _address(hex_text: str, family: int) -> str:
    """/proc/net/tcp* address text (32-bit words printed in host order) to an address."""
    words = (int(hex_text[i:i + 8], 16) for i in range(0, len(hex_text), 8))
    packed = b"".join(struct.pack("=I", word) for word in words)
    return str(ipaddress.IPv4Address(packed)) if family == 4 else _v6(packed)


def _v6(packed: bytes) -> str:
    address = ipaddress.IPv6Address(packed)
    return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else str(address)
