"""Command line: python3 -m lab.kernel build [--variant V] | run --kernel V [--out DIR]."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from lab.kernel.boot import run_nested
from lab.kernel.build import build_variants, source_version
from lab.kernel.commands import build_and_run, dispatch
from lab.kernel.recipe import Recipe, Variant

VARIANTS = [variant.value for variant in Variant]
TCG_VARIANTS = [Variant.STOCK.value, Variant.PATCHED.value]  # what this lab boots


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m lab.kernel", description=__doc__)
    build_and_run(parser, "--variant", VARIANTS, (
        "build (or find cached) the stock and patched kernels",
        "only this kernel (repeatable; default: stock and patched)",
        "boot a built kernel under TCG and print its report"), TCG_VARIANTS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)

    def run() -> None:
        out = args.out or Path(tempfile.mkdtemp(prefix="lab-kernel-", dir="/tmp"))
        variant = Variant(args.kernel)
        done = run_nested(Recipe(variant, source_version(variant)), out, args.timeout)
        print(json.dumps(done.report, indent=2))
        print(f"kernel {args.kernel}: nested run took {done.seconds:.1f} s "
              f"(console: {done.console})", file=sys.stderr)

    return dispatch("lab.kernel", args.command,
                    lambda: build_variants(args.variant or TCG_VARIANTS, args.jobs, print), run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
