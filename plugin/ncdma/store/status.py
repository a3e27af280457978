"""What `ncdma status DOMAIN` shows, gathered: the domain's plan, guard health, journal.

Everything comes from the domain's state directory (root only): the plan from the hook,
the journal and the flat view the guard saved. The slots are cross-checked against the
flat view the guard last read from QEMU over QMP: every journaled slot must match a range
QEMU registered with KVM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ncdma.errors import DomainStateError
from ncdma.model.plan import Plan
from ncdma.model.slot import SlotRecord
from ncdma.settings import Settings
from ncdma.store.files import read_json
from ncdma.store.journal import SavedJournal, read_journal
from ncdma.store.state import FLATVIEW_FILE, PLAN_FILE, guard_pid, read_plan

STATUS_SCHEMA_VERSION = 2  # 2: the journal's slots are slot records (journal schema 2)


@dataclass(frozen=True)
class DomainStatus:
    """What `ncdma status` shows for one domain."""

    plan: Plan
    guard_pid: int | None
    guard_alive: bool
    journal: SavedJournal | None
    flatview: list[dict[str, Any]] | None
    mismatches: tuple[str, ...]


def running_plans(settings: Settings) -> list[Plan]:
    """The plans of every domain started with ncdma on this host, by name."""
    domains = settings.state_dir / "domains"
    plans = (read_plan(settings, plan_file.parent.name)
             for plan_file in (domains.glob(f"*/{PLAN_FILE}") if domains.exists() else ()))
    return sorted((plan for plan in plans if plan is not None), key=lambda plan: plan.domain)


def find_domain(settings: Settings, name_or_uuid: str) -> Plan:
    """The plan of a domain started with ncdma on this host, by name or UUID.

    :raise DomainStateError: When no running domain of that name has a plan here.
    """
    for plan in running_plans(settings):
        if name_or_uuid in (plan.domain, plan.uuid):
            return plan
    raise DomainStateError(f"no domain {name_or_uuid!r} is running with ncdma on this host",
                           "start it with `virsh start` after `ncdma enable`; "
                           "`virsh list` shows what runs", name_or_uuid)


def kvm_range_name(slot: SlotRecord, flatview: list[dict[str, Any]]) -> str | None:
    """The name of the KVM range of the flat view that holds the slot, if any."""
    start, end = slot.gpa, slot.gpa + slot.size
    for entry in flatview:
        if entry.get("kvm") and entry["start"] <= start and end <= entry["start"] + entry["size"]:
            return str(entry["name"])
    return None


def cross_check(journal: SavedJournal | None,
                flatview: list[dict[str, Any]] | None) -> tuple[str, ...]:
    """Journaled slots that QEMU's flat view does not show registered with KVM there.

    The flat view is the one of address space "memory" (KVM address space 0); slots of
    address space 1 (SMM, ``slot >> 16 == 1``) follow SMRAM's layout and are not checked.
    """
    if journal is None or flatview is None:
        return ()
    return tuple(f"slot {slot.slot:#x} {slot.gpa:#x}-{slot.gpa + slot.size:#x} is "
                 f"not in QEMU's flat view" for slot in journal.slots
                 if slot.slot >> 16 == 0 and kvm_range_name(slot, flatview) is None)


def domain_status(settings: Settings, name_or_uuid: str) -> DomainStatus:
    """Gather the status of one domain (a name or UUID)."""
    return plan_status(settings, find_domain(settings, name_or_uuid))


def plan_status(settings: Settings, plan: Plan) -> DomainStatus:
    """Gather the status of the domain of ``plan``."""
    directory = settings.domain_dir(plan.uuid)
    pid = guard_pid(settings, plan)
    journal = read_journal(directory)
    saved = read_json(directory / FLATVIEW_FILE)
    flatview = saved if isinstance(saved, list) else None
    return DomainStatus(plan, pid, pid is not None, journal, flatview,
                        cross_check(journal, flatview))


def status_json(status: DomainStatus) -> dict[str, Any]:
    """The JSON document of `ncdma status --json`."""
    return {"schema_version": STATUS_SCHEMA_VERSION, "plan": status.plan.to_json(),
            "guard": {"pid": status.guard_pid, "alive": status.guard_alive},
            "journal": status.journal.to_json() if status.journal else None,
            "flatview_checked": status.flatview is not None,
            "mismatches": list(status.mismatches)}
