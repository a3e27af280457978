"""What `ncdma migrate --verbose` shows while it works (as virsh, nothing without it): each
phase, and the memory's progress as one updating line on a terminal, else as a plain line
every few seconds."""

from __future__ import annotations

import time
from typing import TextIO

from ncdma.migrate.job import Progress

_PLAIN_PERIOD_S = 2.0


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def progress_text(phase: str, progress: Progress) -> str:
    """``memory  42.0%  12.3 MiB left  85.1 MiB/s  ETA 0.1 s``."""
    eta = progress.eta_s
    return (f"{phase:<12} {progress.percent:5.1f}%  {_size(progress.remaining_bytes)} left  "
            f"{_size(progress.rate_bps)}/s  ETA {'?' if eta is None else f'{eta:.1f} s'}"
            f"{'  (source paused by --timeout)' if progress.suspended else ''}")


class ProgressDisplay:
    """Writes phases and progress to ``stream`` (stderr); nothing when ``quiet`` (without
    --verbose, or with --json)."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream = stream
        self.terminal = stream.isatty()
        self.quiet = quiet
        self.last_plain = 0.0
        self.line_open = False

    def _end_line(self) -> None:
        if self.line_open:
            self.stream.write("\n")
            self.line_open = False

    def phase(self, name: str, detail: str = "") -> None:
        """A new phase begins."""
        if self.quiet:
            return
        self._end_line()
        self.stream.write(f"{name:<12} {detail}\n" if detail else f"{name}\n")
        self.stream.flush()

    def update(self, phase: str, progress: Progress) -> None:
        """The running phase's progress."""
        if self.quiet or not progress.total_bytes:
            return
        text = progress_text(phase, progress)
        if self.terminal:
            self.stream.write(f"\r\033[K{text}")
            self.line_open = True
        elif time.monotonic() - self.last_plain >= _PLAIN_PERIOD_S:
            self.stream.write(f"{text}\n")
            self.last_plain = time.monotonic()
        self.stream.flush()

    def close(self) -> None:
        """End an open terminal line."""
        self._end_line()
        self.stream.flush()
