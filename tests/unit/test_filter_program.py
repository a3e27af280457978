"""The wrapper's seccomp program, run by a classic-BPF interpreter of the few opcodes it uses
(the kernel runs it for real in tests/host/test_seccomp.py and test_filter_abi.py).

What is checked: which syscalls are notified, allowed or killed, and how many instructions
KVM_RUN's path executes (issue 17: every guest exit to QEMU runs it; bench/exitpath.py
has its cost in ns).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from ncdma.kvm.abi import KVM_CHECK_EXTENSION, MEMSLOT_IOCTLS
from ncdma.linux import seccomp
from ncdma.linux.syscalls import AUDIT_ARCH_X86_64, NR_EXIT_GROUP, NR_IOCTL, X32_SYSCALL_BIT

AUDIT_ARCH_I386 = 0x40000003
KVM_RUN = 0xAE80
ALLOW, NOTIFY, KILL = 0x7FFF0000, 0x7FC00000, 0x80000000


def run(program: list[seccomp.SockFilter], nr: int, arch: int, arg1: int) -> tuple[int, int]:
    """The action the program returns for (nr, arch, args[1]) and the instructions run."""
    data = struct.pack("<IIQ6Q", nr, arch, 0, 0, arg1, 0, 0, 0, 0)
    pc, accumulator, executed = 0, 0, 0
    while True:
        instruction = program[pc]
        executed += 1
        if instruction.code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            accumulator = struct.unpack_from("<I", data, instruction.k)[0]
        elif instruction.code in (0x15, 0x35):  # BPF_JMP | BPF_JEQ / BPF_JGE, K
            taken = accumulator == instruction.k if instruction.code == 0x15 \
                else accumulator >= instruction.k
            pc += instruction.jt if taken else instruction.jf
        elif instruction.code == 0x06:  # BPF_RET | BPF_K
            return instruction.k, executed
        else:
            raise AssertionError(f"opcode {instruction.code:#x} not expected")
        pc += 1


@pytest.mark.parametrize("trap_exit", [False, True])
def test_memslot_ioctls_are_notified_from_x86_64_only(trap_exit: bool) -> None:
    program = seccomp.ioctl_filter(MEMSLOT_IOCTLS, trap_exit)
    for request in MEMSLOT_IOCTLS:
        assert run(program, NR_IOCTL, AUDIT_ARCH_X86_64, request)[0] == NOTIFY
        assert run(program, 54, AUDIT_ARCH_I386, request)[0] == KILL  # int $0x80 ioctl
        assert run(program, NR_IOCTL, AUDIT_ARCH_I386, request)[0] == KILL
        assert run(program, X32_SYSCALL_BIT | 514, AUDIT_ARCH_X86_64, request)[0] == KILL


@pytest.mark.parametrize("trap_exit", [False, True])
def test_kvm_run_is_allowed_after_eight_instructions(trap_exit: bool) -> None:
    """Before issue 17 it took 10 (11 with trap_exit): the ABI and x32 checks came first."""
    program = seccomp.ioctl_filter(MEMSLOT_IOCTLS, trap_exit)
    for request in (KVM_RUN, KVM_CHECK_EXTENSION):
        assert run(program, NR_IOCTL, AUDIT_ARCH_X86_64, request) == (ALLOW, 8)


def test_exit_group_is_notified_only_when_asked() -> None:
    assert run(seccomp.ioctl_filter(MEMSLOT_IOCTLS, True), NR_EXIT_GROUP, AUDIT_ARCH_X86_64,
               0)[0] == NOTIFY
    assert run(seccomp.ioctl_filter(MEMSLOT_IOCTLS), NR_EXIT_GROUP, AUDIT_ARCH_X86_64,
               0)[0] == ALLOW


@given(nr=st.integers(0, 2**32 - 1), arch=st.sampled_from([AUDIT_ARCH_X86_64, AUDIT_ARCH_I386]),
       arg1=st.integers(0, 2**64 - 1), trap_exit=st.booleans())
def test_every_syscall_gets_the_action_of_the_rule(nr: int, arch: int, arg1: int,
                                                   trap_exit: bool) -> None:
    """Another ABI is killed, x86-64 memslot ioctls (and exit_group with trap_exit) are
    notified, everything else is allowed."""
    if arch != AUDIT_ARCH_X86_64 or nr >= X32_SYSCALL_BIT:
        expected = KILL
    elif (nr == NR_IOCTL and arg1 & 0xFFFFFFFF in MEMSLOT_IOCTLS) or \
            (trap_exit and nr == NR_EXIT_GROUP):
        expected = NOTIFY
    else:
        expected = ALLOW
    assert run(seccomp.ioctl_filter(MEMSLOT_IOCTLS, trap_exit), nr, arch, arg1)[0] == expected
