"""The copy's machinery on this machine's real kernel: another process's shared memory
mapped through /proc/PID/map_files, cache-flushed reads and writes, and exit_group held
by the guard while the memory is still there."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import select
import socket
from pathlib import Path

import pytest

from ncdma.errors import SlotMemoryError
from ncdma.kvm.abi import MEMSLOT_IOCTLS
from ncdma.linux import cacheflush, seccomp, syscalls
from ncdma.linux.slotmem import capture, preallocate, restore
from ncdma.wrapper import with_machine_option

SIZE = 4 << 20
PATTERN = bytes(range(256)) * (SIZE // 256)


def _child_with_memory(shared: bool, trap_exit: bool = False):
    """A child holding SIZE bytes of PATTERN (memfd-shared or private anonymous).

    It reports (address, listener) on a socket, waits for a byte, then sends back the
    checksum of its memory and exits with status 7.
    """
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            parent.close()
            if shared:
                fd = os.memfd_create("slot")
                os.ftruncate(fd, SIZE)
                memory = mmap.mmap(fd, SIZE, mmap.MAP_SHARED)
            else:
                memory = mmap.mmap(-1, SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            memory[:] = PATTERN
            address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
            fds = [seccomp.install_ioctl_filter(MEMSLOT_IOCTLS, trap_exit=True)] if trap_exit else []
            socket.send_fds(child, [str(address).encode()], fds)
            child.recv(1)
            child.send(hashlib.sha256(memory[:]).hexdigest().encode())
        finally:
            os._exit(7)
    child.close()
    message, fds, _, _ = socket.recv_fds(parent, 64, 1)
    return pid, parent, int(message), fds[0] if fds else None


def _finish(pid: int, link: socket.socket) -> str:
    link.send(b"g")
    digest = link.recv(64).decode()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
    return digest


def test_a_shared_slot_is_read_and_written_through_map_files(tmp_path: Path) -> None:
    pid, link, address, _ = _child_with_memory(shared=True)
    target = tmp_path / "slot.bin"
    preallocate(target, SIZE)
    transfer = capture(pid, address, SIZE, target)
    assert target.read_bytes() == PATTERN
    assert transfer.sha256 == hashlib.sha256(PATTERN).hexdigest()
    new = os.urandom(SIZE)
    written = restore(pid, address, new)
    assert written.sha256 == hashlib.sha256(new).hexdigest()
    assert _finish(pid, link) == written.sha256, "the child sees what was written"


def test_private_anonymous_memory_is_refused_with_the_way_out(tmp_path: Path) -> None:
    pid, link, address, _ = _child_with_memory(shared=False)
    with pytest.raises(SlotMemoryError, match="private anonymous memory") as error:
        capture(pid, address, SIZE, tmp_path / "slot.bin")
    assert "aux-ram-share" in error.value.hint
    _finish(pid, link)


def test_exit_group_waits_for_the_guard_with_the_memory_still_mapped(tmp_path: Path) -> None:
    pid, link, address, listener = _child_with_memory(shared=True, trap_exit=True)
    link.send(b"g")
    assert link.recv(64)
    assert select.select([listener], [], [], 5)[0], "exit_group was not trapped"
    note = seccomp.receive(listener)
    assert note.nr == syscalls.NR_EXIT_GROUP
    capture(pid, address, SIZE, tmp_path / "slot.bin")  # exiting, its memory still there
    assert (tmp_path / "slot.bin").read_bytes() == PATTERN
    assert seccomp.answer_continue(listener, note.id)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7


def test_the_exit_trapping_filter_adds_exactly_exit_group() -> None:
    plain = {i.k for i in seccomp.ioctl_filter(MEMSLOT_IOCTLS) if i.code == 0x15}
    trapping = {i.k for i in seccomp.ioctl_filter(MEMSLOT_IOCTLS, trap_exit=True) if i.code == 0x15}
    assert trapping - plain == {syscalls.NR_EXIT_GROUP}


def test_the_flush_routine_runs_and_leaves_data_intact() -> None:
    code = cacheflush.flush_routine_code(clflushopt=False)
    assert code.startswith(bytes.fromhex("4839f7")) and code.endswith(bytes.fromhex("0faef0c3"))
    buffer = bytearray(PATTERN)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    cacheflush.flush_range(address + 3, len(buffer) - 3)  # unaligned start and end
    assert bytes(buffer) == PATTERN
    assert cacheflush.instruction() in ("clflushopt", "clflush")


def test_aux_ram_share_joins_libvirts_machine_option() -> None:
    assert with_machine_option(["-name", "x", "-machine", "pc,usb=off"], "aux-ram-share=on") == \
        ["-name", "x", "-machine", "pc,usb=off,aux-ram-share=on"]
    assert with_machine_option(["-m", "128"], "aux-ram-share=on")[-2:] == \
        ["-machine", "aux-ram-share=on"]
