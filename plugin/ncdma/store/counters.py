"""Counters and last values that ncdma's programs record for the metrics textfile.

One JSON file in the state directory (``metrics.json``, root only, 0600), changed under an
exclusive lock on ``metrics.lock`` and replaced atomically, so that the hook, the guards'
keepers and `ncdma migrate` can record at the same time. It lives in /run: counters start
from zero at boot, which Prometheus's ``rate()`` and ``increase()`` take as a reset.

Recording never fails the operation that records: a state directory that cannot be
written loses the sample (and says so in the caller's log).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ncdma.settings import Settings

COUNTERS_FILE = "metrics.json"
_LOCK_FILE = "metrics.lock"


@dataclass(frozen=True)
class Sample:
    """One change: add ``value`` to the counter ``name`` with ``labels``, or (``gauge``)
    set it to ``value``."""

    name: str
    labels: Mapping[str, str]
    value: float = 1.0
    gauge: bool = False

    @property
    def key(self) -> str:
        """The labels as one stable key."""
        return json.dumps(dict(sorted(self.labels.items())))


def read_counters(settings: Settings) -> dict[str, dict[str, float]]:
    """Every recorded series: name -> labels key (JSON) -> value; empty when none."""
    try:
        with open(settings.state_dir / COUNTERS_FILE, encoding="utf-8") as handle:
            data: Any = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: {key: float(value) for key, value in series.items()}
            for name, series in data.items() if isinstance(series, dict)}


def record(settings: Settings, *samples: Sample) -> None:
    """Apply ``samples`` to the counters file, under its lock.

    :raise OSError: When the state directory cannot be written (callers log it and go on).
    """
    directory = settings.state_dir
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    lock = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_counters(settings)
        for sample in samples:
            series = data.setdefault(sample.name, {})
            series[sample.key] = sample.value + (0.0 if sample.gauge else
                                                 series.get(sample.key, 0.0))
        temporary = directory / f".{COUNTERS_FILE}.{os.getpid()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, directory / COUNTERS_FILE)
    finally:
        os.close(lock)
