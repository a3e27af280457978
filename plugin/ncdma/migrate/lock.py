"""One `ncdma migrate` per domain at a time on a host: an flock on a file per domain.

The file lives beside the domain's migration directory (``<state_dir>/migrations/UUID.lock``),
never inside it (that directory is recreated by every migration). The lock goes with the
process: a killed `ncdma migrate` leaves nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ncdma.errors import MigrationBusy


def lock_path(state_dir: Path, uuid: str) -> Path:
    """The lock file of domain ``uuid``."""
    return state_dir / "migrations" / f"{uuid}.lock"


def acquire(state_dir: Path, uuid: str, name: str) -> int:
    """Hold the domain's migration lock (an fd: closing it releases the lock).

    :raise MigrationBusy: When another process holds it (its pid named).
    """
    path = lock_path(state_dir, uuid)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise MigrationBusy(f"{name} is already being migrated by another `ncdma migrate` "
                            f"(pid {holder}) on {os.uname().nodename}",
                            "wait until it ends, or interrupt it (Ctrl-C)", path) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return descriptor
