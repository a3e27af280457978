"""The lab's one error type."""
from __future__ import annotations

from pathlib import Path


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message says why and what to do."""


def tail(path: Path, lines: int = 20) -> str:
    """Last lines of a log, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
