"""Run inside a lab host: read and write a running domain's memory from outside the guest.

Through QEMU's own memory (/proc/PID/mem at the RAMBlock's host address that `info
ramblock` reports), exactly as a non-snooping device's DMA lands: KVM's dirty log never
sees it. Stdlib and virsh only (the host's python3). Prints one JSON line.

    guestmem.py write DOMAIN BLOCK OFFSET SIZE SEED          write random bytes
    guestmem.py sha DOMAIN BLOCK OFFSET SIZE                 checksum a range
    guestmem.py write-when-sent DOMAIN BLOCK OFFSET SIZE SEED MIB
        wait until the running migration has fewer than MIB MiB of memory left to send
        (so the first pass has carried the range), then write
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
import time


def _virsh(*args: str) -> str:
    return subprocess.run(["virsh", *args], capture_output=True, text=True, check=True).stdout


def block_hva(domain: str, block: str) -> int:
    """The host address of RAMBlock ``block`` (QEMU >= 8.0 reports it)."""
    table = _virsh("qemu-monitor-command", "--hmp", domain, "info ramblock")
    for line in table.splitlines():
        fields = line.split()
        if fields and fields[0] == block:
            return int(fields[-2] if fields[-1] in ("ro", "rw") else fields[-1], 16)
    raise SystemExit(f"no RAMBlock {block} in:\n{table}")


def _qemu_pid(domain: str) -> int:
    with open(f"/run/libvirt/qemu/{domain}.pid", encoding="ascii") as handle:
        return int(handle.read())


def write(domain: str, block: str, offset: int, size: int, seed: int) -> dict[str, object]:
    data = random.Random(seed).randbytes(size)
    with open(f"/proc/{_qemu_pid(domain)}/mem", "r+b", buffering=0) as memory:
        memory.seek(block_hva(domain, block) + offset)
        memory.write(data)
    return {"sha256": hashlib.sha256(data).hexdigest()}


def sha(domain: str, block: str, offset: int, size: int) -> dict[str, object]:
    with open(f"/proc/{_qemu_pid(domain)}/mem", "rb", buffering=0) as memory:
        memory.seek(block_hva(domain, block) + offset)
        return {"sha256": hashlib.sha256(memory.read(size)).hexdigest()}


def _remaining_mib(domain: str) -> float | None:
    info = _virsh("domjobinfo", domain)
    found = re.search(r"Memory remaining:\s+([\d.]+) (KiB|MiB|GiB)", info)
    if found is None:
        return None
    return float(found.group(1)) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[found.group(2)]


def write_when_sent(domain: str, block: str, offset: int, size: int, seed: int,
                    below_mib: float) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        remaining = _remaining_mib(domain)
        if remaining is not None and remaining < below_mib:
            return {**write(domain, block, offset, size, seed), "remaining_mib": remaining}
        time.sleep(0.05)
    raise SystemExit("the migration never got that far")


def main(argv: list[str]) -> None:
    command, domain, block, *numbers = argv
    values = [int(value, 0) for value in numbers[:4]]
    if command == "write":
        result = write(domain, block, *values[:3])
    elif command == "sha":
        result = sha(domain, block, *values[:2])
    else:
        result = write_when_sent(domain, block, *values[:3], float(numbers[3]))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
