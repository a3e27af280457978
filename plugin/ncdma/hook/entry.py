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

import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from ncdma.errors import HookTimeout, NcdmaError
from ncdma.hook.outcome import HookOutcome
from ncdma.model.policy import NAMESPACE

if TYPE_CHECKING:
    import logging

    from ncdma.settings import Settings

NEVER_FAIL = frozenset({"reconnect", "stopped", "release"})
# Operations ncdma acts on; any other (future ones) passes at once.
HANDLED = frozenset({"prepare", "start", "started", "migrate", "restore"}) | NEVER_FAIL
_OPT_IN_MARKER = NAMESPACE.encode()




def run(argv: Sequence[str], data: bytes) -> HookOutcome:
    """Run the hook for libvirt's ``argv`` (without the program name) and stdin ``data``."""
    if len(argv) < 2:
        return HookOutcome(2, stderr="usage: HOOK DOMAIN OPERATION SUB-OPERATION EXTRA "
                                     "(libvirt runs this; domain XML on stdin)")
    domain_name, operation = argv[0], argv[1]
    if operation not in HANDLED or _OPT_IN_MARKER not in data:
        return HookOutcome()
    # Imported here, past the opt-in check: a domain without ncdma pays for none of it.
    import logging

    from ncdma.hook.operations import handle
    from ncdma.logs import configure_logging
    from ncdma.settings import load_settings

    may_fail = operation not in NEVER_FAIL
    log = logging.getLogger("ncdma.hook")
    settings = None
    try:
        settings = load_settings()
        log = configure_logging(settings, "hook")
        def _raise_timeout(signum: int, frame: FrameType | None) -> None:
            raise HookTimeout("the hook ran out of time",
                              f"raise hook_timeout in {settings.source}", operation,
                              settings.hook_timeout)

        signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, settings.hook_timeout)
        try:
            outcome = handle(operation, data, settings, log)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except NcdmaError as err:
        message = f"ncdma: {operation} of {domain_name}: {err}"
        log.error("%s", message, exc_info=True)  # the log has the traceback, libvirt one line
        outcome = HookOutcome(1, stderr=message) if may_fail else HookOutcome()
    except Exception as err:  # noqa: BLE001 - libvirt must get one line, never a traceback
        message = f"ncdma: {operation} of {domain_name}: internal error: {err!r}"
        log.error("%s", message, exc_info=True)
        outcome = HookOutcome(1, stderr=message) if may_fail else HookOutcome()
    if outcome.status != 0 and settings is not None:
        _count_refusal(settings, operation, log)
    return outcome


def _count_refusal(settings: Settings, operation: str, log: logging.Logger) -> None:
    """ncdma_hook_refusals_total{operation} (see ncdma.cli.metrics)."""
    from ncdma.store.counters import Sample, record

    try:
        record(settings, Sample("hook_refusals_total", {"operation": operation}))
    except OSError as err:
        log.warning("cannot count the refusal in %s: %s", settings.state_dir, err)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of hooks/qemu.d/50-ncdma: stdin in, one outcome out."""
    data = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    outcome = run(sys.argv[1:] if argv is None else argv, data)
    if outcome.stdout:
        sys.stdout.write(outcome.stdout)
    if outcome.stderr:
        sys.stderr.write(outcome.stderr + "\n")
    return outcome.status
