"""Ctrl-C, SIGTERM and SIGHUP during `ncdma migrate`: one way to stop, at a safe moment.

Until libvirt's switchover an interruption aborts libvirt's job (:class:`Interrupted` is
raised in the main thread, where the job is watched). After it the VM has moved: stopping
then would leave the destination paused with no copy anywhere, so the signal is only
remembered (:meth:`Interrupts.hold`) and the copy completes.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The operator (or the system) asked `ncdma migrate` to stop."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Interrupts:
    """The handlers of :data:`SIGNALS` while a migration runs."""

    def __init__(self) -> None:
        self.holding = False
        self.held: str | None = None

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.holding:
            self.held = self.held or name
            return
        raise Interrupted(name)

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle the signals for the block's duration; the previous handlers after."""
        previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def hold(self) -> None:
        """From now on a signal is remembered, not raised: the copy must complete."""
        self.holding = True
