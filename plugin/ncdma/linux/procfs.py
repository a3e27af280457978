"""What /proc says about another process's threads: the syscall each one waits in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ncdma.linux.syscalls import NR_EXIT_GROUP


def thread_syscalls(pid: int) -> Iterator[tuple[int, list[str]]]:
    """(thread id, fields of /proc/PID/task/TID/syscall) of every thread of ``pid``."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            yield int(task.name), (task / "syscall").read_text().split()
        except OSError:
            continue


def exiting(pid: int) -> bool:
    """True if a thread of ``pid`` waits in exit_group (trapped for the guard)."""
    return any(fields[:1] == [str(NR_EXIT_GROUP)] for _, fields in thread_syscalls(pid))
