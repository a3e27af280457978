"""Per-domain state on disk: the plan the hook writes for the wrapper and the guard.

Layout: ``<state_dir>/domains/<uuid>/plan.json``, directories 0700 and files 0600, owned
by root; written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ncdma.errors import NcdmaError
from ncdma.plan import Plan
from ncdma.settings import Settings

PLAN_FILE = "plan.json"


def write_plan(settings: Settings, plan: Plan) -> Path:
    """Store ``plan`` in the domain's state directory; return the file's path."""
    directory = settings.domain_dir(plan.uuid)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / PLAN_FILE
    temporary = directory / f".{PLAN_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
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
