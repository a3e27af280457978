"""The source's facts for the preflight: the domain's policy, plan, guard and tagged slots."""

from __future__ import annotations

from ncdma.migrate.preflight import SourceFacts
from ncdma.settings import Settings
from ncdma.store.journal import read_journal
from ncdma.store.state import guard_pid, read_plan
from ncdma.virt.domain import parse_domain


def gather_source(settings: Settings, name: str, uuid: str, xml: str) -> SourceFacts:
    """What this host knows of the running domain (``xml``: its live definition)."""
    domain = parse_domain(xml.encode())
    if domain.policy is None:
        return SourceFacts(name, uuid, notes=("the domain does not opt in to ncdma",))
    plan = read_plan(settings, uuid)
    if plan is None:
        return SourceFacts(name, uuid, domain.policy.migration.value,
                           domain.policy.mode.value, domain.policy.require,
                           notes=("the domain opts in but was not started with ncdma on this "
                                  "host: no tagged slot is known",))
    journal = read_journal(settings.domain_dir(uuid))
    selected = journal.selected() if journal else ()
    return SourceFacts(name, uuid, plan.migration, plan.requested.value, plan.require,
                       plan.mode.value, selected, guard_pid(settings, plan) is not None,
                       bool(journal and journal.capture_at_exit), plan.reasons, plan.method.value)
