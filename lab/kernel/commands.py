"""The command line shared by the kernel labs (lab.kernel, lab.intel): build, then run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lab.errors import LabError


def build_and_run(parser: argparse.ArgumentParser, build_option: str, kernels: Sequence[str],
                  helps: tuple[str, str, str], run_kernels: Sequence[str]
                  ) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``build`` and ``run`` subcommands of ``parser``; ``helps`` are build's, its
    ``build_option``'s (one kernel of ``kernels``, repeatable) and run's."""
    build_help, only_help, run_help = helps
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help=build_help)
    build.add_argument(build_option, choices=list(kernels), action="append", help=only_help)
    build.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="make -j")
    run = sub.add_parser("run", help=run_help)
    run.add_argument("--kernel", choices=list(run_kernels), required=True)
    run.add_argument("--out", type=Path, help="run directory (default: a new one in /tmp)")
    run.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
    return build, run


def dispatch(name: str, command: str, build: Callable[[], None], run: Callable[[], None]) -> int:
    """Run ``build`` or ``run`` as ``command`` says; exit status 0, or 1 with the lab's error
    in one line."""
    try:
        (build if command == "build" else run)()
    except LabError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    return 0
