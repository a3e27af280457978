"""x86-64 syscall numbers ncdma uses (arch/x86/entry/syscalls/syscall_64.tbl), named once.

The seccomp filter matches them, /proc/PID/task/TID/syscall shows them, and ctypes calls
the ones glibc or Python do not wrap.
"""

from __future__ import annotations

import ctypes
import os

from ncdma.errors import SeccompError

AUDIT_ARCH_X86_64 = 0xC000003E  # seccomp_data.arch of x86-64 syscalls
X32_SYSCALL_BIT = 0x40000000     # set in the number of an x32 syscall (same arch)
NR_IOCTL = 16
NR_EXIT_GROUP = 231
NR_SECCOMP = 317
NR_PIDFD_OPEN = 434
NR_PIDFD_GETFD = 438

libc = ctypes.CDLL(None, use_errno=True)


def checked(result: int, what: str) -> int:
    """``result`` of the libc call ``what``, or its errno as a :class:`SeccompError`."""
    if result < 0:
        code = ctypes.get_errno()
        raise SeccompError(f"{what} failed: {os.strerror(code)}",
                           "this kernel needs seccomp user notification (Linux 5.5+) and "
                           "pidfd_getfd (5.6+); run `ncdma check`", what, code)
    return result
