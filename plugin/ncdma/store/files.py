"""The state directory's files: one atomic writer, one tolerant reader, and their modes.

Readers (`ncdma status`, the wrapper, a successor guard) never see a half-written file:
every write goes to a temporary file beside the target and is renamed over it. Modes are
set here, whatever the umask of the writer (libvirt gives the hook its own):
:data:`SHARED` for what QEMU's user and `ncdma status` read, :data:`PRIVATE` for root's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SHARED = 0o644       # plan, journal, flat view, guard pid: root writes, anyone reads
PRIVATE = 0o600      # capture requests and results: root only
SHARED_DIR = 0o755   # a domain's directory
PRIVATE_DIR = 0o700  # a migration's directory


def make_directory(path: Path, mode: int) -> Path:
    """``path`` (and its parents) as a directory of exactly ``mode``."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def write_text(path: Path, text: str, mode: int = SHARED) -> None:
    """Replace ``path`` with ``text`` atomically; the file gets ``mode``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def write_json(path: Path, document: object, mode: int = SHARED,
               indent: int | None = None) -> None:
    """Replace ``path`` with ``document`` as JSON, atomically; the file gets ``mode``."""
    write_text(path, json.dumps(document, indent=indent), mode)


def read_json(path: Path) -> object | None:
    """The JSON document in ``path``, or None when it is missing, unreadable or not JSON."""
    try:
        document: object = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document


def read_json_object(path: Path) -> dict[str, Any] | None:
    """:func:`read_json`, keeping only a JSON object (anything else counts as unreadable)."""
    document = read_json(path)
    return document if isinstance(document, dict) else None
