"""Benchmark: the Ansible role on the lab's two hosts, first run and idempotent rerun.

Targets (issue 6): first run on both hosts <= 120 s, idempotent rerun <= 30 s. Baseline in
the same run: `ansible -m ansible.builtin.ping` of both hosts (SSH and Ansible's own cost).
The hosts start without ncdma (removed with ncdma_state=absent) and end without it.
Run (as root): .venv/bin/python -m bench.ansible
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from lab.playbook import Run, ping, playbook
from bench.timing import lab_up, runs_argument

REPO = Path(__file__).parents[1]
FIRST_TARGET_S, RERUN_TARGET_S = 120.0, 30.0
ABSENT = ("-e", "ncdma_state=absent", "-e", "ncdma_purge=true")


def timed(run: Run) -> float:
    """Seconds of a run that must have succeeded."""
    if run.returncode != 0:
        raise SystemExit(f"bench.ansible: a run failed:\n{run.describe()}")
    return run.seconds


def measure(runs: int) -> list[tuple[str, float, float | None, str]]:
    """(name, seconds, target or None, note) rows, medians of ``runs`` runs each."""
    baseline, first, rerun = [], [], []
    changed = ""
    for _ in range(runs):
        timed(playbook(*ABSENT))
        baseline.append(timed(ping()))
        first.append(timed(playbook()))
        again = playbook()
        rerun.append(timed(again))
        changed = ", ".join(f"{host} changed={n}" for host, n in again.changed().items())
    absent = timed(playbook(*ABSENT))
    return [("baseline: ansible ping of h1 and h2", statistics.median(baseline), None, ""),
            ("first run of site.yml on h1 and h2", statistics.median(first), FIRST_TARGET_S, ""),
            ("idempotent rerun", statistics.median(rerun), RERUN_TARGET_S, changed),
            ("ncdma_state=absent (once)", absent, None, "")]


def main() -> int:
    runs = runs_argument(__doc__, 1)
    with lab_up(REPO):
        rows = measure(runs)
    missed = False
    print(f"the ncdma role on the lab's two hosts (over SSH), median of {runs} run(s)")
    for name, seconds, target, note in rows:
        verdict = ""
        if target is not None:
            missed |= seconds > target
            verdict = f"  target <= {target:.0f} s: {'met' if seconds <= target else 'MISSED'}"
        print(f"  {name:<38} {seconds:7.1f} s{verdict}{'  ' + note if note else ''}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
