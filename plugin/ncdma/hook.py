"""The libvirt hook: ncdma's part in every step of an opted-in domain's life.

libvirt runs every executable in /etc/libvirt/hooks/qemu.d/ as
``HOOK DOMAIN OPERATION SUB-OPERATION EXTRA`` with the domain XML on stdin. Rules this
module keeps (libvirt's hook documentation, FACTS.md):

- a domain without ncdma metadata costs one substring search: exit 0, nothing written;
- a non-zero exit aborts the operation and libvirt shows our stderr: one line;
- ``reconnect`` must never fail (libvirt would kill the running VM), nor ``stopped``/``release``;
- never call libvirt (deadlock), never leave a child holding libvirt's pipes, finish within
  ``hook_timeout`` seconds whatever happens;
- never log the domain XML (it can hold secrets).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from lxml import etree

from ncdma.domain import Domain, parse_domain
from ncdma.errors import NcdmaError
from ncdma.host import gather_host_report
from ncdma.logs import configure_logging
from ncdma.plan import Plan, Refusal, decide_plan
from ncdma.policy import NAMESPACE
from ncdma.settings import Settings, load_settings
from ncdma.state import read_plan, remove_domain_state, write_plan
from ncdma.verdict import Mode, Verdict, decide

NEVER_FAIL = frozenset({"reconnect", "stopped", "release"})
RECEIVING = {"migrate": "accept the incoming migration of", "restore": "restore"}
_OPT_IN_MARKER = NAMESPACE.encode()


@dataclass(frozen=True)
class HookOutcome:
    """What the hook answers libvirt: exit status, stdout (replacement XML), stderr line."""

    status: int = 0
    stdout: str = ""
    stderr: str = ""


class HookTimeout(NcdmaError):
    """The operation ran past ``hook_timeout``."""


def _host_verdict(settings: Settings) -> Verdict:
    return decide(gather_host_report(settings.flag, with_versions=False))


def _state_key(domain: Domain) -> str:
    return domain.uuid or domain.name


def _prepare(domain: Domain, settings: Settings, log: logging.Logger) -> HookOutcome:
    decision = decide_plan(domain, _host_verdict(settings), settings)
    if isinstance(decision, Refusal):
        log.error("%s", decision.reason)
        return HookOutcome(1, stderr=decision.reason)
    if decision is None:
        log.info("%s: policy mode is off, nothing to do", domain.name)
        return HookOutcome()
    path = write_plan(settings, decision)
    _log_plan(log, decision, f"plan written to {path}")
    return HookOutcome()


def _log_plan(log: logging.Logger, plan: Plan, what: str) -> None:
    level = logging.INFO if plan.mode.value == plan.requested.value else logging.WARNING
    log.log(level, "%s: mode %s (requested %s), devices %s; %s%s", plan.domain, plan.mode.value,
            plan.requested.value, ",".join(plan.devices) or "none", what,
            "".join(f"; {reason}" for reason in plan.reasons))


def _started(domain: Domain, settings: Settings, log: logging.Logger) -> HookOutcome:
    plan = read_plan(settings, _state_key(domain))
    if plan is None or plan.mode is Mode.NONE:
        return HookOutcome()
    # The memslot guard is not part of this version: nothing can be attached yet.
    missing = f"ncdma: {domain.name} runs without ncdma's memslot guard (not in this version)"
    if plan.require:
        log.error("%s; its policy requires the guard: stopping it", missing)
        return HookOutcome(1, stderr=f"{missing}: its policy says require='yes'")
    log.warning("%s; running unguarded in %s mode", missing, plan.mode.value)
    return HookOutcome()


def _receive(domain: Domain, data: bytes, operation: str, settings: Settings,
             log: logging.Logger) -> HookOutcome:
    decision = decide_plan(domain, _host_verdict(settings), settings, RECEIVING[operation])
    if isinstance(decision, Refusal):
        log.error("%s", decision.reason)
        return HookOutcome(1, stderr=decision.reason)
    if decision is None or domain.emulator == str(settings.wrapper):
        return HookOutcome()
    log.info("%s: %s with <emulator> rewritten to this host's wrapper %s", domain.name,
             operation, settings.wrapper)
    return HookOutcome(stdout=_with_emulator(data, str(settings.wrapper)))


def _with_emulator(data: bytes, emulator: str) -> str:
    """The same domain XML with only <emulator> changed (ABI-neutral)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(data, parser)
    element = root.find("devices/emulator")
    if element is None:
        element = etree.SubElement(root.find("devices"), "emulator")
    element.text = emulator
    return etree.tostring(root, encoding="unicode")


def _reconnect(domain: Domain, settings: Settings, log: logging.Logger) -> HookOutcome:
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
    if operation == "prepare":
        return _prepare(domain, settings, log)
    if operation == "started":
        return _started(domain, settings, log)
    if operation in RECEIVING:
        return _receive(domain, data, operation, settings, log)
    if operation == "reconnect":
        return _reconnect(domain, settings, log)
    if operation in ("stopped", "release"):
        remove_domain_state(settings, _state_key(domain))
    return HookOutcome()


def _raise_timeout(signum: int, frame: FrameType | None) -> None:
    raise HookTimeout("the hook ran out of time", "raise hook_timeout in /etc/ncdma/ncdma.conf")


def run(argv: Sequence[str], data: bytes) -> HookOutcome:
    """Run the hook for libvirt's ``argv`` (without the program name) and stdin ``data``."""
    if len(argv) < 2:
        return HookOutcome(2, stderr="usage: HOOK DOMAIN OPERATION SUB-OPERATION EXTRA "
                                     "(libvirt runs this; domain XML on stdin)")
    domain_name, operation = argv[0], argv[1]
    if _OPT_IN_MARKER not in data:
        return HookOutcome()
    may_fail = operation not in NEVER_FAIL
    log = logging.getLogger("ncdma.hook")
    try:
        settings = load_settings()
        log = configure_logging(settings, "hook")
        signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, settings.hook_timeout)
        try:
            return handle(operation, data, settings, log)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except NcdmaError as err:
        message = f"ncdma: {operation} of {domain_name}: {err}"
    except Exception as err:  # noqa: BLE001 - libvirt must get one line, never a traceback
        log.debug("internal error", exc_info=True)
        message = f"ncdma: {operation} of {domain_name}: internal error: {err!r}"
    log.error("%s", message)
    return HookOutcome(1, stderr=message) if may_fail else HookOutcome()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of hooks/qemu.d/50-ncdma: stdin in, one outcome out."""
    data = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    outcome = run(sys.argv[1:] if argv is None else argv, data)
    if outcome.stdout:
        sys.stdout.write(outcome.stdout)
    if outcome.stderr:
        sys.stderr.write(outcome.stderr + "\n")
    return outcome.status
