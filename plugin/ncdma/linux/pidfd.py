"""pidfds: a handle on a process that a recycled pid cannot fool.

:func:`alive` is ncdma's one liveness check: it pins the process with a pidfd before it
compares the start time (so the pid cannot be reused meanwhile), and a process that has
exited (a zombie too) is not alive. It needs no permission on the process, so it never
confuses "not mine" (EPERM) with "gone".
"""

from __future__ import annotations

import os
import select
from pathlib import Path

from ncdma.errors import SeccompError
from ncdma.linux.syscalls import NR_PIDFD_GETFD, NR_PIDFD_OPEN, checked, libc


def pidfd_open(pid: int) -> int:
    """A pidfd for ``pid``: readable once the process has exited.

    :raise SeccompError: When there is no such process.
    """
    return checked(libc.syscall(NR_PIDFD_OPEN, pid, 0), f"pidfd_open({pid})")


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """A copy of file descriptor ``target_fd`` of the process behind ``pidfd``.

    :raise SeccompError: When the kernel refuses (no such fd, no ptrace rights).
    """
    return checked(libc.syscall(NR_PIDFD_GETFD, pidfd, target_fd, 0),
                   f"pidfd_getfd(fd {target_fd})")


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot (/proc/PID/stat field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and ')'
    return int(fields[19]) if len(fields) > 19 else None


def alive(pid: int, started: int | None = None) -> bool:
    """``pid`` runs, and when ``started`` is given it is the process that started then."""
    if pid <= 0:
        return False
    try:
        pidfd = pidfd_open(pid)
    except SeccompError:  # ESRCH: no such process
        return False
    try:
        if started is not None and start_time(pid) != started:
            return False
        return not select.select([pidfd], [], [], 0)[0]
    finally:
        os.close(pidfd)
