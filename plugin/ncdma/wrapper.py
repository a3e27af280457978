"""The emulator wrapper libvirt starts instead of QEMU (the domain's <emulator>).

It finds the plan the hook wrote for this domain (by QEMU's ``-uuid`` argument) and
execs the real QEMU with the same pid, arguments and inherited file descriptors. Without
a plan (libvirt probing capabilities, a domain that does not opt in) it execs the default
QEMU untouched. The seccomp filter and the memslot guard are not part of this version:
every domain runs unguarded, and the hook says so at ``started``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ncdma.errors import NcdmaError
from ncdma.settings import Settings, load_settings
from ncdma.state import read_plan


def _argument(argv: Sequence[str], option: str) -> str | None:
    """The value following ``option`` in QEMU's command line, if present."""
    for name, value in zip(argv, argv[1:]):
        if name == option:
            return value
    return None


def real_emulator(argv: Sequence[str], settings: Settings) -> str:
    """The QEMU binary to exec for this command line."""
    uuid = _argument(argv, "-uuid")
    plan = read_plan(settings, uuid) if uuid else None
    if plan is not None and os.access(plan.emulator, os.X_OK):
        return plan.emulator
    return str(settings.qemu)


def main() -> int:
    """Entry point ``ncdma-qemu``: become the real QEMU, or say in one line why not."""
    try:
        emulator = real_emulator(sys.argv[1:], load_settings())
        os.execv(emulator, [emulator, *sys.argv[1:]])
    except NcdmaError as err:
        print(f"ncdma-qemu: {err}", file=sys.stderr)
    except OSError as err:
        print(f"ncdma-qemu: cannot run QEMU: {err} (set qemu in /etc/ncdma/ncdma.conf)",
              file=sys.stderr)
    return 1
