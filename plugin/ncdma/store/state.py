"""Per-domain state on disk: the plan the hook writes for the wrapper and the guard.

Layout: ``<state_dir>/domains/<uuid>/plan.json``, written by root only, atomically
(temporary file, then rename). The plan is readable by all (0644 in 0755 directories): the
emulator wrapper runs as QEMU's user and reads it; it holds nothing secret (no domain XML).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ncdma.errors import NcdmaError
from ncdma.model.plan import Plan
from ncdma.settings import Settings

# The files of a domain's state directory.
PLAN_FILE = "plan.json"          # the hook's decision (root writes, all read)
SLOTS_FILE = "slots.json"        # the guard's journal
FLATVIEW_FILE = "flatview.json"  # QEMU's flat view, as the guard last read it over QMP
GUARD_PID_FILE = "guard.pid"
PENDING_FILE = "pending"         # the notification the guard is answering (for a successor)
QMP_SOCKET = "qmp/qmp.sock"      # QEMU's private QMP socket, in a directory QEMU's user owns


def write_plan(settings: Settings, plan: Plan) -> Path:
    """Store ``plan`` in the domain's state directory; return the file's path."""
    directory = settings.domain_dir(plan.uuid)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    directory.chmod(0o755)  # whatever the umask libvirt gave the hook
    target = directory / PLAN_FILE
    temporary = directory / f".{PLAN_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    os.fchmod(descriptor, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(plan.to_json(), handle, indent=2)
    os.replace(temporary, target)
    return target


def read_plan(settings: Settings, uuid: str) -> Plan | None:
    """The domain's plan, or None when the hook wrote none (the domain does not opt in).

    :raise NcdmaError: When a plan exists but cannot be read.
    """
    path = settings.domain_dir(uuid) / PLAN_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            return Plan.from_json(json.load(handle))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NcdmaError(f"unreadable plan {path}: {err}",
                         "restart the domain so that the hook writes it again") from None


def remove_domain_state(settings: Settings, uuid: str) -> None:
    """Forget everything about a domain; never fails."""
    shutil.rmtree(settings.domain_dir(uuid), ignore_errors=True)


def guard_pid(settings: Settings, plan: Plan) -> int | None:
    """The pid of the domain's guard if it is alive, else None."""
    try:
        pid = int((settings.domain_dir(plan.uuid) / GUARD_PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid
