"""Shared helpers of the benchmarks: medians, and rows printed against same-run baselines."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lab.lab import Lab

# (name, median ms, target ms or None). A row with a target is compared with the row
# before it, which is its baseline measured in the same run.
Row = tuple[str, float, "float | None"]


def median_ms(action: Callable[[], object], runs: int) -> float:
    """Median wall time of ``action`` over ``runs`` runs, in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def command(argv: Sequence[str], stdin: bytes = b"", env: dict[str, str] | None = None
            ) -> Callable[[], object]:
    """A callable running ``argv`` to completion with ``stdin``, output discarded."""
    return lambda: subprocess.run(list(argv), input=stdin, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=env, check=False)


def print_rows(title: str, rows: Sequence[Row]) -> int:
    """Print each row with its ratio to the baseline before it; 1 if a target was missed."""
    failed = False
    print(title)
    for index, (name, value, target) in enumerate(rows):
        baseline = rows[index - 1][1] if target is not None and index else None
        ratio = f"  x{value / baseline:.2f} of the row above" if baseline else ""
        verdict = ""
        if target is not None:
            met = value <= target
            failed |= not met
            verdict = f"  target <= {target:.0f} ms: {'met' if met else 'MISSED'}"
        print(f"  {name:<44} {value:8.2f} ms{ratio}{verdict}")
    return 1 if failed else 0


def runs_argument(description: str | None, default: int) -> int:
    """The --runs option of a benchmark's command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=default)
    return int(parser.parse_args().runs)


@contextmanager
def lab_up(repo: Path) -> Iterator[Lab]:
    """The lab, brought up for a benchmark and left as it was found."""
    lab = Lab(repo)
    was_up = lab.is_up()
    lab.up()
    try:
        yield lab
    finally:
        if not was_up:
            lab.down()
