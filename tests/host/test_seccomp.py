"""The memslot filter on this machine's real kernel: only memslot ioctls are trapped."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import socket
import struct

import pytest

from ncdma.kvm import abi
from ncdma.kvm.abi import MEMSLOT_IOCTLS
from ncdma.linux import pidfd, seccomp, syscalls


def _child(body) -> tuple[int, socket.socket]:
    """Fork a child that installs the filter, sends the listener, then runs ``body``."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        try:
            listener = seccomp.install_ioctl_filter(MEMSLOT_IOCTLS)
            socket.send_fds(child, [b"l"], [listener])
            os.close(listener)
            child.recv(1)
            os._exit(body())
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            os._exit(99)
    child.close()
    return pid, parent


def _exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _ioctl_errno(request: int) -> int:
    with open("/dev/null", "rb") as null:
        try:
            fcntl.ioctl(null.fileno(), request, bytes(32))
        except OSError as err:
            return err.errno
    return 0


def test_memslot_ioctls_are_trapped_and_continue_runs_them() -> None:
    pid, link = _child(lambda: 10 if _ioctl_errno(abi.KVM_SET_USER_MEMORY_REGION)
                       == errno.ENOTTY else 11)
    _, [listener], _, _ = socket.recv_fds(link, 1, 1)
    link.send(b"g")
    assert select.select([listener], [], [], 5)[0], "no notification within 5 s"
    note = seccomp.receive(listener)
    assert note.nr == syscalls.NR_IOCTL and note.arch == syscalls.AUDIT_ARCH_X86_64
    assert note.args[1] == abi.KVM_SET_USER_MEMORY_REGION
    assert seccomp.is_pending(listener, note.id)
    assert seccomp.answer_continue(listener, note.id)
    assert _exit_code(pid) == 10, "the ioctl ran for real (/dev/null answers ENOTTY)"
    assert not seccomp.is_pending(listener, note.id)


def test_other_syscalls_and_ioctls_are_not_trapped() -> None:
    def body() -> int:
        fionread = _ioctl_errno(0x541B)  # FIONREAD on /dev/null: not a memslot ioctl
        return 10 if fionread in (0, errno.ENOTTY, errno.EINVAL) and os.getpid() else 11
    pid, link = _child(body)
    _, [listener], _, _ = socket.recv_fds(link, 1, 1)
    link.send(b"g")
    assert _exit_code(pid) == 10
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    # the child is gone: the listener hangs up, with no notification to read
    assert [events & select.POLLIN for _, events in poller.poll(200)] in ([], [0])


def test_v2_ioctl_is_trapped_too() -> None:
    pid, link = _child(lambda: 10 if _ioctl_errno(abi.KVM_SET_USER_MEMORY_REGION2)
                       == errno.ENOTTY else 11)
    _, [listener], _, _ = socket.recv_fds(link, 1, 1)
    link.send(b"g")
    assert select.select([listener], [], [], 5)[0]
    note = seccomp.receive(listener)
    assert note.args[1] & 0xFFFFFFFF == abi.KVM_SET_USER_MEMORY_REGION2
    seccomp.answer_continue(listener, note.id)
    assert _exit_code(pid) == 10


def test_without_any_listener_the_trapped_ioctl_fails_with_enosys() -> None:
    # What the wrapper relies on when the guard service refuses: QEMU cannot create slots.
    pid, link = _child(lambda: 10 if _ioctl_errno(abi.KVM_SET_USER_MEMORY_REGION)
                       == errno.ENOSYS else 11)
    _, [listener], _, _ = socket.recv_fds(link, 1, 1)
    os.close(listener)
    link.send(b"g")
    assert _exit_code(pid) == 10


def test_a_new_supervisor_takes_the_listener_back_and_answers_what_was_left() -> None:
    def body() -> int:
        return 10 if _ioctl_errno(abi.KVM_SET_USER_MEMORY_REGION) == errno.ENOTTY else 11

    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # keeps its own copy of the listener, as QEMU does
        parent.close()
        listener = seccomp.install_ioctl_filter(MEMSLOT_IOCTLS)
        socket.send_fds(child, [struct.pack("i", listener)], [listener])
        child.recv(1)
        os._exit(body())
    child.close()
    message, [first], _, _ = socket.recv_fds(parent, 4, 1)
    number_in_child = struct.unpack("i", message)[0]
    parent.send(b"g")
    assert select.select([first], [], [], 5)[0]
    note = seccomp.receive(first)
    os.close(first)  # the first supervisor "dies" without answering
    handle = pidfd.pidfd_open(pid)
    second = pidfd.pidfd_getfd(handle, number_in_child)
    assert seccomp.is_pending(second, note.id)
    assert seccomp.answer_continue(second, note.id)
    assert _exit_code(pid) == 10


def test_filter_program_traps_only_x86_64_ioctl_with_the_two_requests() -> None:
    program = seccomp.ioctl_filter(MEMSLOT_IOCTLS)
    assert len(program) == 14  # 8 of them on KVM_RUN's path (tests/unit/test_filter_program.py)
    assert {instruction.k for instruction in program if instruction.code == 0x15} == {
        syscalls.AUDIT_ARCH_X86_64, syscalls.NR_IOCTL,
        abi.KVM_SET_USER_MEMORY_REGION, abi.KVM_SET_USER_MEMORY_REGION2}
    assert ctypes.sizeof(seccomp.SeccompNotif) == 80
    assert ctypes.sizeof(seccomp.SeccompNotifResp) == 24


@pytest.mark.parametrize("value", [seccomp.SECCOMP_IOCTL_NOTIF_RECV, seccomp.SECCOMP_IOCTL_NOTIF_SEND,
                                   seccomp.SECCOMP_IOCTL_NOTIF_ID_VALID])
def test_notification_ioctl_numbers_match_the_uapi_header(value) -> None:
    assert value in (0xC0502100, 0xC0182101, 0x40082102)
