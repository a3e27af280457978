"""What each libvirt hook operation does for an opted-in domain (see :mod:`ncdma.hook.entry`).

Imported only once the hook has seen that the domain opts in, so that a domain without
ncdma costs the hook no more than an interpreter start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ncdma.errors import DomainXmlError
from ncdma.hook.outcome import HookOutcome
from ncdma.model.verdict import Mode
from ncdma.virt.domain import parse_domain

# Each operation imports what only it needs (the host probe, the plan, AppArmor, the QEMU
# user): libvirt waits on every hook run, and imports are most of a run's time.
if TYPE_CHECKING:
    from ncdma.model.domain import Domain
    from ncdma.model.plan import Plan
    from ncdma.model.verdict import Verdict
    from ncdma.settings import Settings

RECEIVING = {"migrate": "accept the incoming migration of", "restore": "restore"}


def _host_verdict(settings: Settings) -> Verdict:
    from ncdma.host.report import gather_host_report
    from ncdma.model.verdict import decide_mode

    return decide_mode(gather_host_report(settings.flag), settings.stand_in)


def _state_key(domain: Domain) -> str:
    """State is keyed by UUID only (a name can be reused or renamed); handle() refuses or
    skips a domain without one before any state is touched."""
    return domain.uuid


def _device_ram_shareable(plan: Plan, settings: Settings) -> tuple[bool, str]:
    """Whether the copy policy's device RAM can be shared, probed on this host's configured
    QEMU only: the hook never opens a path taken from the domain XML (a FIFO there would
    block it)."""
    if plan.emulator != str(settings.qemu):
        return False, (f"migration='copy' needs -machine aux-ram-share, and the domain's "
                       f"emulator {plan.emulator} is not this host's configured QEMU "
                       f"{settings.qemu} (the only one the hook inspects): set qemu in "
                       f"{settings.source} or the domain's emulator")
    from ncdma.host.versions import qemu_has_aux_ram_share

    return qemu_has_aux_ram_share(str(settings.qemu)), ""


def _prepare(domain: Domain, settings: Settings, log: logging.Logger) -> HookOutcome:
    from dataclasses import replace

    from ncdma.model.plan import StartRefusal, decide_plan
    from ncdma.store.state import write_plan
    from ncdma.virt.qemuuser import QEMU_CONF, qemu_ids

    decision = decide_plan(domain, _host_verdict(settings), settings)
    if isinstance(decision, StartRefusal):
        log.error("%s", decision.reason)
        return HookOutcome(1, stderr=decision.reason)
    if decision is None:
        log.info("%s: policy mode is off, nothing to do", domain.name)
        return HookOutcome()
    if decision.migration == "copy" and decision.mode is not Mode.NONE:
        shareable, why_not = _device_ram_shareable(decision, settings)
        decision = replace(decision, share_device_ram=shareable,
                           reasons=(*decision.reasons, why_not) if why_not else decision.reasons)
    ids = qemu_ids(domain.dac_label)
    if ids is None:
        unknown = (f"cannot tell which user and group QEMU runs as (DAC label "
                   f"{domain.dac_label!r}, {QEMU_CONF}): the guard service would accept no "
                   f"attach")
        if decision.require:
            reason = f"ncdma: refusing to start {domain.name}: {unknown}"
            log.error("%s", reason)
            return HookOutcome(1, stderr=reason)
        decision = replace(decision, mode=Mode.NONE, reasons=(*decision.reasons, unknown))
    else:
        decision = replace(decision, qemu_uid=ids[0], qemu_gid=ids[1],
                           wrapper=domain.emulator or "")
    path = write_plan(settings, decision)
    _log_plan(log, decision, f"plan written to {path}")
    return HookOutcome()


def _log_plan(log: logging.Logger, plan: Plan, what: str) -> None:
    level = logging.INFO if plan.mode.value == plan.requested.value else logging.WARNING
    log.log(level, "%s: mode %s (requested %s), devices %s; %s%s", plan.domain, plan.mode_text,
            plan.requested.value, ",".join(plan.devices) or "none", what,
            "".join(f"; {reason}" for reason in plan.reasons))


def _start(domain: Domain, settings: Settings, log: logging.Logger) -> HookOutcome:
    """After libvirt's labelling, before QEMU: the domain's own AppArmor rules, if any."""
    from ncdma.store.state import read_plan
    from ncdma.virt import apparmor

    plan = read_plan(settings, _state_key(domain))
    if plan is None or plan.mode is Mode.NONE or not apparmor.enforced():
        return HookOutcome()
    profile = apparmor.confine_domain(settings, plan.uuid)
    if profile is not None:
        log.info("%s: its AppArmor profile %s reaches its own ncdma state only", domain.name,
                 profile)
    return HookOutcome()


def _started(domain: Domain, settings: Settings, log: logging.Logger) -> HookOutcome:
    from ncdma.store.state import guard_pid, read_plan

    plan = read_plan(settings, _state_key(domain))
    if plan is None or plan.mode is Mode.NONE:
        return HookOutcome()
    pid = guard_pid(settings, plan)
    if pid is not None:
        log.info("%s: guard %d attached, %s mode", domain.name, pid, plan.mode_text)
        return HookOutcome()
    missing = f"ncdma: {domain.name} runs without its memslot guard (see the ncdma log)"
    if plan.require:
        log.error("%s; its policy requires the guard: stopping it", missing)
        return HookOutcome(1, stderr=f"{missing}: its policy says require='yes'")
    log.warning("%s; running unguarded", missing)
    return HookOutcome()


def _receive(domain: Domain, data: bytes, operation: str, settings: Settings,
             log: logging.Logger) -> HookOutcome:
    import time

    from ncdma.hook.incoming import incoming_refusal, ticket_stripped
    from ncdma.model.plan import StartRefusal, decide_plan
    from ncdma.virt.domain import with_emulator

    decision = decide_plan(domain, _host_verdict(settings), settings, RECEIVING[operation])
    if isinstance(decision, StartRefusal):
        log.error("%s", decision.reason)
        return HookOutcome(1, stderr=decision.reason)
    refusal = incoming_refusal(domain, data, operation, settings, time.time())
    if refusal is not None:
        log.error("%s", refusal)
        return HookOutcome(1, stderr=refusal)
    stripped = ticket_stripped(data)
    assert domain.policy is not None
    log.info("%s: %s allowed by its policy migration='%s'", domain.name, operation,
             domain.policy.migration.value)
    if decision is None or domain.emulator == str(settings.wrapper):
        return HookOutcome(stdout=stripped.decode() if stripped is not None else "")
    log.info("%s: %s with <emulator> rewritten to this host's wrapper %s", domain.name,
             operation, settings.wrapper)
    return HookOutcome(stdout=with_emulator(stripped or data, str(settings.wrapper)))


def _reconnect(domain: Domain, settings: Settings, log: logging.Logger) -> HookOutcome:
    from ncdma.store.state import read_plan

    plan = read_plan(settings, _state_key(domain))
    host = _host_verdict(settings)
    if plan is None:
        log.warning("%s: reconnected without a plan (started before ncdma was installed?)",
                    domain.name)
    else:
        _log_plan(log, plan, f"reconnected; this host now allows {host.mode.value}")
    return HookOutcome()


def handle(operation: str, data: bytes, settings: Settings, log: logging.Logger) -> HookOutcome:
    """Run one hook operation for an opted-in domain's XML ``data``."""
    domain = parse_domain(data)
    if domain.policy is None:
        return HookOutcome()
    if not domain.uuid:
        if operation in ("prepare", *RECEIVING):
            raise DomainXmlError(f"domain {domain.name} has no <uuid>: ncdma keeps a domain's "
                                 f"state by UUID", "give the domain a <uuid> (libvirt adds one "
                                 "to every domain it defines)")
        return HookOutcome()
    if operation == "prepare":
        return _prepare(domain, settings, log)
    if operation == "start":
        return _start(domain, settings, log)
    if operation == "started":
        return _started(domain, settings, log)
    if operation in RECEIVING:
        return _receive(domain, data, operation, settings, log)
    if operation == "reconnect":
        return _reconnect(domain, settings, log)
    if operation in ("stopped", "release"):
        from ncdma.store.state import remove_domain_state

        remove_domain_state(settings, _state_key(domain))
    return HookOutcome()
