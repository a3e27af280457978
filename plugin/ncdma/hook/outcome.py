"""What the hook answers libvirt, shared by the entry and the operations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HookOutcome:
    """What the hook answers libvirt: exit status, stdout (replacement XML), stderr line."""

    status: int = 0
    stdout: str = ""
    stderr: str = ""
