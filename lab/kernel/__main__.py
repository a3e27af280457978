"""Command line: python3 -m lab.kernel build [--variant V] | run --kernel V [--out DIR]."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from lab.errors import LabError
from lab.kernel.boot import run_nested
from lab.kernel.build import build_variants, source_version
from lab.kernel.recipe import Recipe, Variant

VARIANTS = [variant.value for variant in Variant]
TCG_VARIANTS = [Variant.STOCK.value, Variant.PATCHED.value]  # what this lab boots


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m lab.kernel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or find cached) the stock and patched kernels")
    build.add_argument("--variant", choices=VARIANTS, action="append",
                       help="only this kernel (repeatable; default: stock and patched)")
    build.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="make -j")
    run = sub.add_parser("run", help="boot a built kernel under TCG and print its report")
    run.add_argument("--kernel", choices=TCG_VARIANTS, required=True)
    run.add_argument("--out", type=Path, help="run directory (default: a new one in /tmp)")
    run.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        if args.command == "build":
            build_variants(args.variant or TCG_VARIANTS, args.jobs, print)
        else:
            out = args.out or Path(tempfile.mkdtemp(prefix="lab-kernel-", dir="/tmp"))
            variant = Variant(args.kernel)
            done = run_nested(Recipe(variant, source_version(variant)), out, args.timeout)
            print(json.dumps(done.report, indent=2))
            print(f"kernel {args.kernel}: nested run took {done.seconds:.1f} s "
                  f"(console: {done.console})", file=sys.stderr)
    except LabError as err:
        print(f"lab.kernel: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
