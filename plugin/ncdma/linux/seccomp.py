"""seccomp user notification, as the wrapper and the guard need it (ctypes, no C).

The wrapper installs a filter that sends only QEMU's memslot ioctls (and, for domains
that migrate with copy, exit_group) to a listener, kills a process that makes any syscall
through a non-native ABI, and allows every other syscall; the guard receives each
notification, may rewrite the ioctl's argument in QEMU's memory, and answers CONTINUE so
that the kernel runs the ioctl with it.
With CONTINUE the guard never sees the kernel's answer (the probe decides beforehand
whether the flag is accepted).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from ncdma.linux.ioctl import iow, iowr
from ncdma.linux.syscalls import (AUDIT_ARCH_X86_64, NR_EXIT_GROUP, NR_IOCTL, NR_SECCOMP,
                                  X32_SYSCALL_BIT, checked, libc)

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_USER_NOTIF = 0x7FC00000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06

# offsets in struct seccomp_data
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG1_LOW = 16 + 8  # args[1], low 32 bits (ioctl's cmd is an unsigned int)


class SockFilter(ctypes.Structure):
    """``struct sock_filter``: one classic BPF instruction."""

    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    """``struct sock_fprog``: a BPF program."""

    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


class SeccompData(ctypes.Structure):
    """``struct seccomp_data``: the syscall a notification is about."""

    _fields_ = [("nr", ctypes.c_int32), ("arch", ctypes.c_uint32),
                ("instruction_pointer", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6)]


class SeccompNotif(ctypes.Structure):
    """``struct seccomp_notif``."""

    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("data", SeccompData)]


class SeccompNotifResp(ctypes.Structure):
    """``struct seccomp_notif_resp``."""

    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


SECCOMP_IOC_MAGIC = ord("!")
SECCOMP_IOCTL_NOTIF_RECV = iowr(SECCOMP_IOC_MAGIC, 0, ctypes.sizeof(SeccompNotif))
SECCOMP_IOCTL_NOTIF_SEND = iowr(SECCOMP_IOC_MAGIC, 1, ctypes.sizeof(SeccompNotifResp))
SECCOMP_IOCTL_NOTIF_ID_VALID = iow(SECCOMP_IOC_MAGIC, 2, 8)


# (opcode, jump if true, jump if false, k); a jump is an offset or the name of a target
_Instruction = tuple[int, "str | int", "str | int", int]


def ioctl_filter(requests: tuple[int, int], trap_exit: bool = False) -> list[SockFilter]:
    """A filter that notifies for ioctl(fd, one of the two ``requests``) and allows the rest.

    Any syscall through another ABI (32-bit ``int $0x80``, x32) kills the process: the
    same ioctls exist there, and a filter that checks only x86-64 numbers would let them
    through unseen. QEMU on x86-64 never uses those entries.
    The guard traps KVM's memslot ioctls (:data:`ncdma.kvm.abi.MEMSLOT_IOCTLS`). With
    ``trap_exit`` it notifies for exit_group too: QEMU's last moment with its memory mapped,
    where the guard copies tagged slots after a migration (:mod:`ncdma.guard.capture`).

    The order serves KVM_RUN, the ioctl every guest exit to QEMU makes (issue 17): the
    syscall number comes first, so an x86-64 ioctl that is not a memslot one is allowed
    after 8 instructions (before: 10, 11 with ``trap_exit``; bench/exitpath.py has the ns).
    Every syscall but ioctl (and exit_group with ``trap_exit``) is decided by its number and
    ABI alone, so the kernel's per-syscall action cache answers it without the filter.
    """
    first, second = requests
    abi_check: list[_Instruction] = [
        (_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_JEQ_K, 0, "kill", AUDIT_ARCH_X86_64),
    ]
    ioctl_path: list[_Instruction] = [
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
        (_JEQ_K, 0, "other", NR_IOCTL),
        *abi_check,
        (_LD_W_ABS, 0, 0, _OFFSET_ARG1_LOW),
        (_JEQ_K, "notify", 0, first),
        (_JEQ_K, "notify", "allow", second),
    ]
    other_path: list[_Instruction] = [  # every syscall but x86-64's ioctl: number and ABI only
        *abi_check,
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
        (_JGE_K, "kill", 0, X32_SYSCALL_BIT),
        *([(_JEQ_K, "notify", 0, NR_EXIT_GROUP)] if trap_exit else []),
    ]
    program = [*ioctl_path, *other_path, (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
               (_RET_K, 0, 0, _SECCOMP_RET_USER_NOTIF), (_RET_K, 0, 0, _SECCOMP_RET_KILL_PROCESS)]
    end = len(program)
    labels = {"other": len(ioctl_path), "allow": end - 3, "notify": end - 2, "kill": end - 1}

    def offset(index: int, target: str | int) -> int:
        return target if isinstance(target, int) else labels[target] - index - 1

    return [SockFilter(code, offset(index, jt), offset(index, jf), k)
            for index, (code, jt, jf, k) in enumerate(program)]


def install_ioctl_filter(requests: tuple[int, int], trap_exit: bool = False) -> int:
    """Install :func:`ioctl_filter` on the calling thread; return the listener fd.

    The listener is made inheritable: the process keeps a copy across exec, so that a
    new guard can take it back (pidfd_getfd) if the first one dies.

    :raise SeccompError: When the kernel refuses the filter.
    """
    instructions = ioctl_filter(requests, trap_exit)
    array = (SockFilter * len(instructions))(*instructions)
    program = SockFprog(len(instructions), ctypes.cast(array, ctypes.POINTER(SockFilter)))
    checked(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    listener = checked(libc.syscall(NR_SECCOMP, _SECCOMP_SET_MODE_FILTER,
                                    _SECCOMP_FILTER_FLAG_NEW_LISTENER, ctypes.byref(program)),
                      "seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER)")
    os.set_inheritable(listener, True)
    return listener


@dataclass(frozen=True)
class Notification:
    """One trapped syscall: the notification id, the calling thread and its arguments."""

    id: int
    tid: int
    nr: int
    arch: int
    args: tuple[int, ...]


def receive(listener: int) -> Notification | None:
    """Receive one notification; None when the caller vanished before it was read (ENOENT)."""
    buffer = bytearray(ctypes.sizeof(SeccompNotif))
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, buffer)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.EINTR):
            return None
        raise
    notif = SeccompNotif.from_buffer(buffer)
    return Notification(notif.id, notif.pid, notif.data.nr, notif.data.arch,
                        tuple(notif.data.args))


def is_pending(listener: int, notification_id: int) -> bool:
    """The notification's thread still waits for an answer (SECCOMP_IOCTL_NOTIF_ID_VALID)."""
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, struct.pack("Q", notification_id))
    except OSError:
        return False
    return True


def answer_continue(listener: int, notification_id: int) -> bool:
    """Let the trapped syscall run (with its arguments as they now are in memory).

    Returns False when the thread is gone (the process died or was killed meanwhile).
    """
    response = SeccompNotifResp(notification_id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, bytes(response))
    except OSError as err:
        if err.errno == errno.ENOENT:
            return False
        raise
    return True
