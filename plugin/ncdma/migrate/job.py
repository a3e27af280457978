"""libvirt's migration job: run it, watch it, steer it (--timeout), abort it (Ctrl-C).

The migration call blocks until libvirt is done, so it runs in a thread while this one
polls the job's statistics (virDomainGetJobStats) for the progress display. Everything
goes through libvirt's public API.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from ncdma.errors import MigrationFailed

POLL_S = 0.2


@dataclass(frozen=True)
class Progress:
    """One look at the running job."""

    elapsed_s: float
    percent: float
    remaining_bytes: int
    total_bytes: int
    rate_bps: int
    suspended: bool

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, when there is a rate."""
        return self.remaining_bytes / self.rate_bps if self.rate_bps else None

    @classmethod
    def from_stats(cls, stats: dict[str, Any], elapsed_s: float, suspended: bool) -> Progress:
        """From virDomainGetJobStats' typed parameters."""
        total = int(stats.get("memory_total", 0))
        remaining = int(stats.get("memory_remaining", total))
        percent = 100.0 * (total - remaining) / total if total else 0.0
        return cls(elapsed_s, percent, remaining, total, int(stats.get("memory_bps", 0)),
                   suspended)


class MigrationJob:
    """One virDomainMigrate3 (or MigrateToURI3 with --p2p) call, in a thread."""

    def __init__(self, domain: libvirt.virDomain, call: Callable[[], object]) -> None:
        self.domain = domain
        self._call = call
        self.error: libvirt.libvirtError | None = None
        self.suspended_at: float | None = None
        self.started = 0.0
        self._thread = threading.Thread(target=self._run, name="ncdma-migrate", daemon=True)

    def _run(self) -> None:
        try:
            self._call()
        except libvirt.libvirtError as err:
            self.error = err

    def start(self) -> None:
        """Begin the migration."""
        self.started = time.monotonic()
        self._thread.start()

    def progress(self) -> Progress | None:
        """The job's statistics now, or None between jobs."""
        try:
            stats = self.domain.jobStats()
        except libvirt.libvirtError:
            return None
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return Progress.from_stats(stats, time.monotonic() - self.started,
                                   self.suspended_at is not None)

    def suspend_source(self) -> None:
        """virsh's --timeout: pause the source so that the migration converges."""
        if self.suspended_at is None:
            try:
                self.domain.suspend()
                self.suspended_at = time.monotonic()
            except libvirt.libvirtError:
                pass  # the job ended meanwhile

    def wait(self, on_progress: Callable[[Progress], None], timeout_s: int | None) -> None:
        """Until libvirt is done; Ctrl-C aborts the job (and re-raises KeyboardInterrupt).

        :raise MigrationFailed: When libvirt reports a failure.
        """
        try:
            while self._thread.is_alive():
                self._thread.join(POLL_S)
                if timeout_s is not None and time.monotonic() - self.started > timeout_s:
                    self.suspend_source()
                progress = self.progress()
                if progress is not None and self._thread.is_alive():
                    on_progress(progress)
        except KeyboardInterrupt:
            self.abort()
            raise
        if self.error is not None:
            self.resume_source()
            raise MigrationFailed(f"libvirt: {self.error.get_error_message()}")

    def abort(self) -> None:
        """Abort the job and wait until libvirt has rolled it back."""
        try:
            self.domain.abortJob()
        except libvirt.libvirtError:
            pass  # already over
        self._thread.join(60)
        self.resume_source()

    def resume_source(self) -> None:
        """Undo --timeout's pause after a failure: the source keeps running."""
        if self.suspended_at is None:
            return
        try:
            if self.domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                self.domain.resume()
        except libvirt.libvirtError:
            pass  # the domain is gone: nothing to resume
