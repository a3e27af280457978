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

from ncdma.errors import StateFileError
from ncdma.linux.pidfd import alive, start_time
from ncdma.model.plan import Plan
from ncdma.settings import Settings
from ncdma.store.files import SHARED, SHARED_DIR, make_directory, write_json, write_text

# The files of a domain's state directory.
PLAN_FILE = "plan.json"          # the hook's decision (root writes, all read)
SLOTS_FILE = "slots.json"        # the guard's journal
INTENT_FILE = "intent"           # the journal's last change, written before the ioctl's answer
FLATVIEW_FILE = "flatview.json"  # QEMU's flat view, as the guard last read it over QMP
GUARD_PID_FILE = "guard.pid"
PENDING_FILE = "pending"         # the notification the guard is answering (for a successor)
QMP_SOCKET = "qmp/qmp.sock"      # QEMU's private QMP socket, in a directory QEMU's user owns


def write_plan(settings: Settings, plan: Plan) -> Path:
    """Store ``plan`` in the domain's state directory; return the file's path."""
    target = make_directory(settings.domain_dir(plan.uuid), SHARED_DIR) / PLAN_FILE
    write_json(target, plan.to_json(), SHARED, indent=2)
    return target


def read_plan(settings: Settings, uuid: str) -> Plan | None:
    """The domain's plan, or None when the hook wrote none (the domain does not opt in).

    :raise StateFileError: When a plan exists but cannot be read.
    """
    path = settings.domain_dir(uuid) / PLAN_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            return Plan.from_json(json.load(handle))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StateFileError(f"unreadable plan {path}: {err}",
                             "restart the domain so that the hook writes it again", path) from None


def remove_domain_state(settings: Settings, uuid: str) -> None:
    """Forget everything about a domain; never fails."""
    shutil.rmtree(settings.domain_dir(uuid), ignore_errors=True)


def write_guard_pid(directory: Path) -> None:
    """Record the calling process as the domain's guard: its pid and start time."""
    pid = os.getpid()
    write_text(directory / GUARD_PID_FILE, f"{pid} {start_time(pid)}\n", SHARED)


def guard_pid(settings: Settings, plan: Plan) -> int | None:
    """The pid of the domain's guard if it is alive (the same process that wrote it), else None."""
    try:
        fields = (settings.domain_dir(plan.uuid) / GUARD_PID_FILE).read_text().split()
        pid = int(fields[0])
        started = int(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid, started) else None
