"""The state directory's files: one atomic writer, one tolerant reader, and their modes.

Readers (`ncdma status`, the wrapper, a successor guard) never see a half-written file:
every write goes to a temporary file beside the target and is renamed over it. Modes are
set here, whatever the umask of the writer (libvirt gives the hook its own): everything
is :data:`PRIVATE` (root's) but what QEMU's user must read, :data:`QEMU_READS` with its
group. Writes and mode changes go through descriptors of directories that must be root's
alone, never through a path that QEMU's user (or anyone else) could change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PRIVATE = 0o600      # journal, flat view, pid files, plan, captures: root only
QEMU_READS = 0o640   # the wrapper's part of the plan: root writes, QEMU's group reads
PRIVATE_DIR = 0o700  # a migration's directory; a domain's without a QEMU group
QEMU_ENTERS = 0o710  # a domain's directory: QEMU's group may enter, not list
LISTLESS_DIR = 0o711  # domains/: nobody lists the running domains


@contextmanager
def open_private_dir(path: Path, mode: int = PRIVATE_DIR,
                     create: bool = False) -> Iterator[int]:
    """A descriptor of directory ``path``, which must be this user's and writable by it
    alone (``create``: made with ``mode`` when missing). Symlinks are not followed.

    :raise OSError: When it is missing, a symlink, or another user could change it.
    """
    if create:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        found = os.fstat(descriptor)
        if found.st_uid != os.geteuid() or found.st_mode & 0o022:
            raise PermissionError(f"{path} must be owned by uid {os.geteuid()} and writable "
                                  f"by it alone")
        yield descriptor
    finally:
        os.close(descriptor)


def make_directory(path: Path, mode: int, group: int = -1) -> Path:
    """``path`` as a directory of exactly ``mode`` (and ``group``), its parents made
    private; changed through a descriptor."""
    with open_private_dir(path, PRIVATE_DIR, create=True) as directory:
        os.fchown(directory, -1, group)
        os.fchmod(directory, mode)
    return path


def write_text(path: Path, text: str, mode: int = PRIVATE, group: int = -1) -> None:
    """Replace ``path`` with ``text`` atomically; the file gets ``mode`` (and ``group``)."""
    with open_private_dir(path.parent) as directory:
        temporary = f".{path.name}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode, dir_fd=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                os.fchown(handle.fileno(), -1, group)
                os.fchmod(handle.fileno(), mode)
                handle.write(text)
        except BaseException:
            os.unlink(temporary, dir_fd=directory)
            raise
        os.replace(temporary, path.name, src_dir_fd=directory, dst_dir_fd=directory)


def write_json(path: Path, document: object, mode: int = PRIVATE,
               indent: int | None = None, group: int = -1) -> None:
    """Replace ``path`` with ``document`` as JSON, atomically; the file gets ``mode``."""
    write_text(path, json.dumps(document, indent=indent), mode, group)


def load_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file is missing.

    :raise OSError: When it cannot be read.
    :raise ValueError: When it is not JSON, or not a JSON object.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            document: object = json.load(handle)
    except FileNotFoundError:
        return None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def read_json(path: Path) -> object | None:
    """The JSON document in ``path``, or None when it is missing, unreadable or not JSON."""
    try:
        document: object = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document


def read_json_object(path: Path) -> dict[str, Any] | None:
    """:func:`load_json_object`, tolerant: None also when unreadable or not an object."""
    try:
        return load_json_object(path)
    except (OSError, ValueError):
        return None
