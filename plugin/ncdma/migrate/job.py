"""libvirt's migration job: run it, watch it, steer it (--timeout), abort it (Ctrl-C).

An interruption may come after libvirt can no longer stop the migration: :meth:`settle`
aborts and then reads libvirt's answer to the migration call itself, which says whether the
VM moved.

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

from ncdma.errors import MigrationFailed, OutcomeUnknown

POLL_S = 0.2
SETTLE_S = 60.0


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


@dataclass(frozen=True)
class Steering:
    """What virsh does to a running migration: --timeout's action, post-copy after pre-copy."""

    timeout_s: int | None = None
    timeout_postcopy: bool = False  # else suspend the source (virsh's default)
    postcopy_after_precopy: bool = False


class MigrationJob:
    """One virDomainMigrate3 (or MigrateToURI3 with --p2p) call, in a thread."""

    def __init__(self, domain: libvirt.virDomain, call: Callable[[], object]) -> None:
        self.domain = domain
        self._call = call
        self.error: libvirt.libvirtError | None = None
        self.suspended_at: float | None = None
        self.postcopy_started = False
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
        """virsh's --timeout (--timeout-suspend): pause the source so that the migration
        converges."""
        if self.suspended_at is None:
            try:
                self.domain.suspend()
                self.suspended_at = time.monotonic()
            except libvirt.libvirtError:
                pass  # the job ended meanwhile

    def start_postcopy(self) -> None:
        """virsh's --timeout-postcopy and --postcopy-after-precopy: switch to post-copy."""
        if not self.postcopy_started:
            self.postcopy_started = True
            try:
                self.domain.migrateStartPostCopy(0)
            except libvirt.libvirtError:
                pass  # the job ended meanwhile, or post-copy is not possible (libvirt says)

    def _steer(self, steering: Steering) -> None:
        """--timeout's action once it is over; post-copy after the first pre-copy pass."""
        if steering.timeout_s is not None and time.monotonic() - self.started > steering.timeout_s:
            if steering.timeout_postcopy:
                self.start_postcopy()
            else:
                self.suspend_source()
        if steering.postcopy_after_precopy and not self.postcopy_started:
            try:
                iteration = int(self.domain.jobStats().get("memory_iteration", 0))
            except libvirt.libvirtError:
                iteration = 0
            if iteration >= 2:  # the second pass began: the first one is over
                self.start_postcopy()

    def wait(self, on_progress: Callable[[Progress], None], steering: Steering) -> None:
        """Until libvirt is done (an interruption propagates: then call :meth:`settle`).

        :raise MigrationFailed: When libvirt reports a failure (--timeout's pause undone).
        """
        while self._thread.is_alive():
            self._thread.join(POLL_S)
            self._steer(steering)
            progress = self.progress()
            if progress is not None and self._thread.is_alive():
                on_progress(progress)
        if self.error is not None:
            self.resume_source()
            raise MigrationFailed(f"libvirt: {self.error.get_error_message()}")

    def settle(self) -> bool:
        """After an interruption: abort the job unless libvirt is done with it, and read the
        migration call's outcome. True when the VM moved (the abort came too late); False
        when libvirt rolled back (--timeout's pause undone).

        :raise OutcomeUnknown: When the call does not return within SETTLE_S.
        """
        if self._thread.is_alive():
            try:
                self.domain.abortJob()
            except libvirt.libvirtError:
                pass  # over already, or past the point where it can be aborted
            self._thread.join(SETTLE_S)
        if self._thread.is_alive():
            raise OutcomeUnknown(
                f"libvirt's migration call did not return within {SETTLE_S:.0f} s of the abort: "
                f"where the VM runs is unknown", "look with `virsh domjobinfo` and `virsh list` "
                "on both hosts; the captured slots, if any, are kept: if it is left paused on "
                f"the destination, `ncdma migrate --finish {self.domain.name()}` completes it")
        if self.error is None:
            return True
        self.resume_source()
        return False

    def resume_source(self) -> None:
        """Undo --timeout's pause after a failure: the source keeps running."""
        if self.suspended_at is None:
            return
        try:
            if self.domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                self.domain.resume()
        except libvirt.libvirtError:
            pass  # the domain is gone: nothing to resume
