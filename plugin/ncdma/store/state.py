"""Per-domain state on disk: the plan the hook writes for the wrapper and the guard.

Layout: ``<state_dir>/domains/<uuid>/plan.json``, written by root only, atomically
(temporary file, then rename). ``domains/`` is 0711 (nobody lists the running domains);
a domain's directory is root's, 0710 with QEMU's group (its wrapper reads
``wrapper.json``, 0640: the plan's few fields it needs; QEMU serves its QMP socket in
``qmp/``, 0700 QEMU's user); everything else is 0600 (:mod:`ncdma.store.files`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ncdma.errors import StateFileError
from ncdma.linux.pidfd import alive, start_time
from ncdma.model.plan import Plan, WrapperPlan
from ncdma.settings import Settings
from ncdma.store.files import (LISTLESS_DIR, PRIVATE, PRIVATE_DIR, QEMU_ENTERS, QEMU_READS,
                               load_json_object, make_directory, write_json, write_text)

# The files of a domain's state directory.
PLAN_FILE = "plan.json"          # the hook's decision (root only)
WRAPPER_PLAN_FILE = "wrapper.json"  # what the wrapper needs of it (root writes, QEMU reads)
SLOTS_FILE = "slots.json"        # the guard's journal
INTENT_FILE = "intent"           # the journal's last change, written before the ioctl's answer
FLATVIEW_FILE = "flatview.json"  # QEMU's flat view, as the guard last read it over QMP
GUARD_PID_FILE = "guard.pid"
PENDING_FILE = "pending"         # the notification the guard is answering (for a successor)
QMP_SOCKET = "qmp/qmp.sock"      # QEMU's private QMP socket, in a directory QEMU's user owns
# method vm: what QEMU's preload library said of KVM_X86_QUIRK_IGNORE_GUEST_PAT (QEMU writes it)
PAT_REPORT = "qmp/guest-pat.json"


_Parsed = TypeVar("_Parsed")


def write_plan(settings: Settings, plan: Plan) -> Path:
    """Store ``plan`` in the domain's state directory; return the file's path.

    QEMU's group (the plan's) may enter the directory and read the wrapper's part.
    """
    make_directory(settings.state_dir / "domains", LISTLESS_DIR)
    qemu_group = plan.qemu_gid >= 0
    directory = make_directory(settings.domain_dir(plan.uuid),
                               QEMU_ENTERS if qemu_group else PRIVATE_DIR,
                               plan.qemu_gid if qemu_group else 0)
    write_json(directory / WRAPPER_PLAN_FILE, WrapperPlan.of(plan).to_json(),
               QEMU_READS if qemu_group else PRIVATE, group=max(plan.qemu_gid, 0))
    write_json(directory / PLAN_FILE, plan.to_json(), indent=2)
    return directory / PLAN_FILE


def _read(path: Path) -> dict[str, object] | None:
    try:
        return load_json_object(path)
    except (OSError, ValueError) as err:
        raise StateFileError(f"unreadable plan {path}: {err}",
                             "restart the domain so that the hook writes it again", path) from None


def read_plan(settings: Settings, uuid: str) -> Plan | None:
    """The domain's plan, or None when the hook wrote none (the domain does not opt in).

    :raise StateFileError: When a plan exists but cannot be read.
    """
    return _read_plan_file(settings.domain_dir(uuid) / PLAN_FILE, Plan.from_json)


def read_wrapper_plan(settings: Settings, uuid: str) -> WrapperPlan | None:
    """The wrapper's part of the domain's plan, or None when the domain does not opt in.

    :raise StateFileError: When it exists but cannot be read.
    """
    return _read_plan_file(settings.domain_dir(uuid) / WRAPPER_PLAN_FILE, WrapperPlan.from_json)


def _read_plan_file(path: Path, parse: Callable[[dict[str, object]], _Parsed]) -> _Parsed | None:
    """``parse`` of the JSON object in ``path``, or None when there is no such file."""
    document = _read(path)
    try:
        return parse(document) if document is not None else None
    except (ValueError, KeyError, TypeError) as err:
        raise StateFileError(f"unreadable plan {path}: {err}",
                             "restart the domain so that the hook writes it again", path) from None


def remove_domain_state(settings: Settings, uuid: str) -> None:
    """Forget everything about a domain; never fails."""
    shutil.rmtree(settings.domain_dir(uuid), ignore_errors=True)


def write_guard_pid(directory: Path) -> None:
    """Record the calling process as the domain's guard: its pid and start time."""
    pid = os.getpid()
    write_text(directory / GUARD_PID_FILE, f"{pid} {start_time(pid)}\n")


def guard_pid(settings: Settings, plan: Plan) -> int | None:
    """The pid of the domain's guard if it is alive (the same process that wrote it), else None."""
    try:
        fields = (settings.domain_dir(plan.uuid) / GUARD_PID_FILE).read_text().split()
        pid = int(fields[0])
        started = int(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid, started) else None
