"""Fault injection for tests: kill the guard at a named point of its work.

Off unless the guard service runs with ``NCDMA_FAULT_FILE`` set (only tests do that). A
test arms one point by writing its name into that file; the guard that reaches the point
removes the file (the fault fires once) and SIGKILLs itself, exactly as a crash would.

Points: ``after-answer:tag`` (a slot was tagged and its ioctl answered) and
``after-answer:untag`` (a tagged slot's delete was answered) kill the guard once;
``guard-start`` makes every guard taking over from a dead one fail at its start (a guard
that cannot come back), until the test removes the file. ``capture:slow`` makes the next
capture at QEMU's exit slow, once: it sleeps past the capture's deadline before reading.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENVIRONMENT = "NCDMA_FAULT_FILE"


class Faults:
    """The armed fault point, read from the file a test names (nothing when unset)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    def from_environment(cls, environment: dict[str, str] | os._Environ[str]) -> Faults:
        """The faults a test enabled through :data:`ENVIRONMENT`."""
        value = environment.get(ENVIRONMENT)
        return cls(Path(value) if value else None)

    def armed(self, point: str) -> bool:
        """A test armed ``point``."""
        if self.path is None:
            return False
        try:
            return self.path.read_text().strip() == point
        except OSError:
            return False

    def _fire(self, point: str) -> bool:
        """True, once, if a test armed ``point`` (the file is removed)."""
        if not self.armed(point):
            return False
        assert self.path is not None
        self.path.unlink(missing_ok=True)
        return True

    def reached(self, point: str) -> None:
        """Die here (SIGKILL), once, if a test armed ``point``."""
        if self._fire(point):
            os.kill(os.getpid(), signal.SIGKILL)

    def slow(self, point: str, until: float) -> None:
        """Sleep until ``until`` (monotonic), once, if a test armed ``point``."""
        if self._fire(point):
            time.sleep(max(0.0, until - time.monotonic()))
