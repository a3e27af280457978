"""Every `ncdma migrate` run, logged (syslog identifier ``ncdma.migrate``) and counted for
the metrics textfile: its outcome, its downtime, and where the domain runs now."""

from __future__ import annotations

import logging

from ncdma.errors import MigrationRefused, NcdmaError
from ncdma.migrate.summary import Summary
from ncdma.settings import Settings
from ncdma.store.counters import Sample, record


def outcome_of(summary: Summary, error: NcdmaError | None) -> str:
    """The run's outcome as counted: migrated, refused (nothing changed), failed, dry-run."""
    if error is None:
        return summary.outcome
    return "refused" if isinstance(error, MigrationRefused) else "failed"


def record_run(settings: Settings, summary: Summary, error: NcdmaError | None,
               log: logging.Logger) -> None:
    """Log the run's outcome in one line, with its downtime and notes; count it."""
    outcome = outcome_of(summary, error)
    downtime = summary.downtime_ms.get("total", summary.downtime_ms.get("libvirt"))
    parts = [f"{summary.domain} -> {summary.destination}: {outcome}"]
    if summary.strategy:
        parts.append(f"strategy {summary.strategy}")
    if downtime is not None:
        parts.append(f"downtime {downtime:.1f} ms")
    parts.extend(summary.notes)
    if error is not None:
        parts.append(str(error))
    log.log(logging.INFO if outcome in ("migrated", "dry-run") else logging.ERROR,
            "%s", "; ".join(parts))
    if outcome == "dry-run":
        return
    samples = [Sample("migrations_total", {"outcome": outcome})]
    if downtime is not None:
        samples.append(Sample("migration_last_downtime_seconds", {"domain": summary.domain},
                              downtime / 1e3, gauge=True))
    try:
        record(settings, *samples)
    except OSError as err:
        log.warning("cannot count the migration in %s: %s", settings.state_dir, err)
