"""What a guard shows its keeper: the notifications it took and answered, and until when it
may hold one (a capture at QEMU's exit).

One shared anonymous page, created by the keeper before it forks the guard: both see it.
Writing it costs a struct pack per notification (about a microsecond).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

_LAYOUT = struct.Struct("<QQd")  # taken, answered, hold_until (CLOCK_MONOTONIC seconds)


@dataclass(frozen=True)
class Beat:
    """One look at the page."""

    taken: int
    answered: int
    hold_until: float

    @property
    def busy(self) -> bool:
        """The guard took a notification it has not answered yet."""
        return self.taken > self.answered


class Heartbeat:
    """The shared page; the guard writes it, the keeper reads it."""

    def __init__(self) -> None:
        self.page = mmap.mmap(-1, _LAYOUT.size)  # MAP_SHARED: inherited across fork
        self.taken = self.answered_count = 0
        self.hold_until = 0.0

    def _write(self) -> None:
        _LAYOUT.pack_into(self.page, 0, self.taken, self.answered_count, self.hold_until)

    def reset(self) -> None:
        """A new guard starts: nothing taken, nothing held."""
        self.taken = self.answered_count = 0
        self.hold_until = 0.0
        self._write()

    def took(self) -> None:
        """A notification was received."""
        self.taken += 1
        self._write()

    def answered(self) -> None:
        """A notification was answered."""
        self.answered_count = self.taken
        self.hold_until = 0.0
        self._write()

    def hold(self, until: float) -> None:
        """The notification taken may wait until ``until`` (monotonic): a capture at exit."""
        self.hold_until = until
        self._write()

    def read(self) -> Beat:
        """The page as the guard last wrote it."""
        return Beat(*_LAYOUT.unpack_from(self.page, 0))
