"""Who is at the other end of a unix socket, and what that process holds.

The guard service believes only what the kernel says about a caller: its pid, uid and gid
(SO_PEERCRED, taken when it connected), a pidfd of that very process (SO_PEERPIDFD, Linux
6.5+; older kernels get a pidfd_open of the pid right at accept), and its command line.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

from ncdma.linux.pidfd import pidfd_open

SO_PEERPIDFD = 77
_KCMP_FILE = 0
_SECCOMP_LISTENER = "anon_inode:seccomp notify"


@dataclass(frozen=True)
class Caller:
    """The process at the other end of a connection, as the kernel reports it."""

    pid: int
    uid: int
    gid: int
    pidfd: int


def caller_of(connection: socket.socket) -> Caller:
    """The connected process: its credentials at connect time and a pidfd of it.

    :raise OSError: When the kernel cannot say (the caller is already gone).
    """
    raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        pidfd = connection.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:  # before Linux 6.5: a pidfd now (the checks below narrow pid reuse)
        pidfd = pidfd_open(pid)
    return Caller(pid, uid, gid, pidfd)


def command_line(pid: int) -> list[str]:
    """The process's arguments (empty when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(1 << 16)
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def is_seccomp_listener(fd: int) -> bool:
    """``fd`` is a seccomp user-notification listener."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == _SECCOMP_LISTENER
    except OSError:
        return False


def is_thread_of(tid: int, pid: int) -> bool:
    """Thread ``tid`` belongs to process ``pid`` (or is it)."""
    return os.path.exists(f"/proc/{pid}/task/{tid}")
