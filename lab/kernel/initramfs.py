"""The nested run's initramfs: a static busybox and init.sh, packed as a newc cpio.

Written directly in the kernel's "newc" format (no root needed for the /dev/console
node, no cpio tool) and cached under a hash of its contents (the cache keeps the newest).
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from lab.errors import LabError
from lab.kernel.recipe import CACHE_DIR, KERNEL_DIR

BUSYBOX = Path("/usr/bin/busybox")
INIT_SCRIPT = KERNEL_DIR / "init.sh"
_TRAILER = "TRAILER!!!"


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def newc_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               ino: int = 0, mtime: int = 0) -> bytes:
    """One cpio "newc" record: header, NUL-terminated name and data, each 4-byte aligned."""
    fields = (ino, mode, 0, 0, 1, mtime, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    header = b"070701" + b"".join(f"{field:08x}".encode() for field in fields)
    record = header + name.encode() + b"\0"
    return record + _pad(len(record)) + data + _pad(len(data))


def initramfs_image(busybox: bytes, init: bytes,
                    files: Sequence[tuple[str, bytes]] = ()) -> bytes:
    """The whole archive: the directories init needs, /dev/console, busybox and /init, and
    ``files`` (name, content; their directories made)."""
    directories = ["bin", "dev", "proc", "sys", "newroot"]
    parents = {"/".join(name.split("/")[:depth]) for name, _ in files
               for depth in range(1, name.count("/") + 1)}
    directories += sorted(parents)  # a parent sorts before its children
    entries = [(name, stat.S_IFDIR | 0o755, b"", (0, 0)) for name in directories]
    entries += [("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
                ("bin/busybox", stat.S_IFREG | 0o755, busybox, (0, 0)),
                ("init", stat.S_IFREG | 0o755, init, (0, 0))]
    entries += [(name, stat.S_IFREG | 0o644, data, (0, 0)) for name, data in files]
    records = [newc_entry(name, mode, data, rdev, ino)
               for ino, (name, mode, data, rdev) in enumerate(entries, start=1)]
    return b"".join(records) + newc_entry(_TRAILER, 0)


def static_busybox() -> bytes:
    """The static busybox the initramfs runs.

    :raise LabError: When busybox is not the static one (package busybox-static).
    """
    try:
        busybox = BUSYBOX.read_bytes()
    except FileNotFoundError:
        raise LabError(f"{BUSYBOX} is missing: apt-get install busybox-static") from None
    if b"/lib64/ld-linux" in busybox[:4096]:
        raise LabError(f"{BUSYBOX} is dynamically linked: apt-get install busybox-static")
    return busybox


def build_initramfs() -> Path:
    """Make sure the initramfs is in the cache; return its path.

    :raise LabError: When busybox is not the static one (package busybox-static).
    """
    busybox = static_busybox()
    init = INIT_SCRIPT.read_bytes()
    key = hashlib.sha256(busybox + init).hexdigest()[:16]
    path = CACHE_DIR / f"initramfs-{key}.cpio"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(initramfs_image(busybox, init))
        os.replace(temporary, path)
        for stale in CACHE_DIR.glob("initramfs-*.cpio"):  # one initramfs in the cache
            if stale != path:
                stale.unlink()
    return path
