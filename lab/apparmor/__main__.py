"""Command line: python3 -m lab.apparmor build | run [--out DIR] [--timeout S]."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from lab.apparmor.kernel import fetch_kernel, run_apparmor_lab
from lab.kernel.commands import dispatch


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab.apparmor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="fetch (or find cached) Debian's kernel")
    run = sub.add_parser("run", help="boot it with AppArmor and print the driver's report")
    run.add_argument("--out", type=Path, help="run directory (default: a new one in /tmp)")
    run.add_argument("--timeout", type=float, default=300, help="seconds (default 300)")
    args = parser.parse_args(argv)

    def build() -> None:
        print(f"Debian's kernel for the AppArmor lab: {fetch_kernel()}")

    def boot() -> None:
        out = args.out or Path(tempfile.mkdtemp(prefix="lab-apparmor-", dir="/tmp"))
        report, seconds, console = run_apparmor_lab(out, args.timeout)
        print(json.dumps(report, indent=2))
        print(f"AppArmor lab: {seconds:.1f} s (console: {console})", file=sys.stderr)

    return dispatch("lab.apparmor", args.command, build, boot)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
