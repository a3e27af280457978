"""Write back and invalidate the CPU cache lines of a memory range (x86-64).

A non-snooping device reads and writes DRAM directly, past the CPU caches. Before the
CPU reads memory such a device wrote, stale lines must be invalidated; after the CPU
writes memory such a device will read, dirty lines must be written back. CLFLUSHOPT
(or CLFLUSH on CPUs without it) does both for one 64-byte line, by virtual address,
for every mapping of that physical line.

Python has no instruction for it, so this module assembles a 19-byte routine into an
executable page once (written while read-write, then made read-execute: never both)::

    loop:  cmp  rdi, rsi         ; address >= end?
           jae  done
           clflushopt [rdi]      ; or clflush
           add  rdi, 64
           jmp  loop
    done:  mfence                ; the flushes are complete before we go on
           ret
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable
from functools import cache
from pathlib import Path

CACHE_LINE = 64
_CLFLUSHOPT = bytes.fromhex("660fae3f")  # clflushopt [rdi]
_CLFLUSH = bytes.fromhex("0fae3f")       # clflush [rdi]
_CMP_RDI_RSI = bytes.fromhex("4839f7")
_ADD_RDI_64 = bytes.fromhex("4883c740")
_MFENCE_RET = bytes.fromhex("0faef0c3")

_FlushRoutine = Callable[[int, int], None]


def has_clflushopt(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True if this CPU has CLFLUSHOPT (else CLFLUSH, slower, is used)."""
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return "clflushopt" in line.split()
    return False


def flush_routine_code(clflushopt: bool) -> bytes:
    """The machine code of the flush loop (see the module's docstring)."""
    flush = _CLFLUSHOPT if clflushopt else _CLFLUSH
    body = flush + _ADD_RDI_64
    jump_back = -(len(_CMP_RDI_RSI) + 2 + len(body) + 2)
    return (_CMP_RDI_RSI + bytes([0x73, len(body) + 2]) + body
            + bytes([0xEB, jump_back & 0xFF]) + _MFENCE_RET)


@cache
def _routine() -> tuple[mmap.mmap, _FlushRoutine, str]:
    clflushopt = has_clflushopt()
    code = flush_routine_code(clflushopt)
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mprotect(ctypes.c_void_p(address), mmap.PAGESIZE,
                     mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        raise OSError(ctypes.get_errno(), "mprotect of the cache-flush routine failed")
    function = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint64)(address)
    return page, function, "clflushopt" if clflushopt else "clflush"


def instruction() -> str:
    """The instruction this CPU flushes with: ``clflushopt`` or ``clflush``."""
    return _routine()[2]


def flush_range(address: int, size: int) -> None:
    """Write back and invalidate every cache line of [address, address + size)."""
    if size <= 0:
        return
    start = address & ~(CACHE_LINE - 1)
    _routine()[1](start, address + size)
