"""The human view of `ncdma status DOMAIN`: mode and why, guard health, the slots table."""

from __future__ import annotations


from ncdma.model.plan import Plan
from ncdma.model.policy import Method
from ncdma.model.verdict import Mode
from ncdma.store.journal import SavedJournal
from ncdma.store.status import DomainStatus, kvm_range_name


def guest_pat_text(plan: Plan, journal: SavedJournal | None) -> str | None:
    """Method vm's VM-level line, from what the guard journaled (None for method slot)."""
    if plan.method is not Method.VM:
        return None
    if plan.mode is not Mode.ENFORCE:
        return f"guest PAT: NOT honored (mode {plan.mode.value}: see why above)"
    state = journal.guest_pat if journal else None
    if state is None:
        return "guest PAT: not known yet (the guard journals it at QEMU's first memslot ioctl)"
    if state.honored:
        return f"guest PAT: honored for the whole VM ({state.reason})"
    return f"guest PAT: NOT honored: {state.reason}"


def status_text(status: DomainStatus) -> str:
    """The human view of `ncdma status`."""
    plan = status.plan
    lines = [f"{plan.domain} ({plan.uuid})",
             f"mode: {plan.mode_text} (requested {plan.requested.value}, "
             f"require {'yes' if plan.require else 'no'}, bars {','.join(plan.bars)}, "
             f"flag {plan.flag:#x})",
             f"method: {plan.method.value} (requested {plan.requested_method.value})",
             f"migration: {plan.migration}" + (
                 " (plain libvirt migrations and restores accepted, tagged content unverified)"
                 if plan.migration == "any" else "")]
    lines.extend(f"  why: {reason}" for reason in plan.reasons)
    guard = "alive" if status.guard_alive else "NOT running"
    lines.append(f"guard: {guard}" + (f" (pid {status.guard_pid})" if status.guard_pid else ""))
    journal = status.journal
    pat = guest_pat_text(plan, journal)
    if pat is not None:
        lines.append(pat)
    counts, latency = (journal.counts, journal.latency_us) if journal else ({}, {})
    if counts:
        lines.append(f"  decisions {counts.get('tag', 0)} tag, {counts.get('keep', 0)} keep, "
                     f"{counts.get('untouched', 0)} untouched, {counts.get('delete', 0)} delete;"
                     f" latency p50 {latency.get('p50', '?')} us, p99 {latency.get('p99', '?')} us")
    lines.append(f"  {'slot':>6}  {'GPA range':<33} {'size':>10}  {'verdict':<9} "
                 f"{'flag':<4}  owner")
    for slot in journal.slots if journal else ():
        end = slot.gpa + slot.size - 1
        owner = slot.owner.describe()
        if not slot.owner.device:  # not a GPU BAR: name QEMU's region there
            region = kvm_range_name(slot, status.flatview or []) or "?"
            owner = f"{owner or 'QEMU region'} {region}"
        lines.append(f"  {slot.slot:>#6x}  {slot.gpa:#018x}-{end:#014x} "
                     f"{slot.size:>#10x}  {slot.decision.value:<9} "
                     f"{'set' if slot.flag_set else '-':<4}  {owner}")
    if status.flatview is None:
        lines.append("flat view: not read yet (the guard reads it over QMP)")
    elif status.mismatches:
        lines.append("flat view: MISMATCH")
        lines.extend(f"  - {problem}" for problem in status.mismatches)
    else:
        lines.append("flat view: every journaled slot matches a KVM range in QEMU's flat view")
    return "\n".join(lines)


def summary_text(statuses: list[DomainStatus]) -> str:
    """`ncdma status` without a domain: one line per domain running with ncdma."""
    if not statuses:
        return "no domain runs with ncdma on this host"
    lines = [f"{'domain':<24} {'uuid':<36}  {'mode':<10} {'guard':<11} {'tagged':>6}  flat view"]
    for status in statuses:
        slots = status.journal.slots if status.journal else ()
        tagged = sum(1 for slot in slots if slot.flag_set)
        view = ("not read" if status.flatview is None else
                f"{len(status.mismatches)} MISMATCH" if status.mismatches else "ok")
        lines.append(f"{status.plan.domain:<24} {status.plan.uuid:<36}  "
                     f"{status.plan.mode.value:<10} "
                     f"{'alive' if status.guard_alive else 'NOT running':<11} {tagged:>6}  {view}")
    return "\n".join(lines)
