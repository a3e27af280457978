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

import sys

from ncdma.model.namespace import NAMESPACE

# The hook runs for every domain and operation, most of them none of ncdma's business:
# this module imports nothing else at load time (a domain without ncdma costs an
# interpreter start, stdin and one substring search); the rest is imported in run().
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Sequence

    from ncdma.hook.outcome import HookOutcome
    from ncdma.settings import Settings

NEVER_FAIL = frozenset({"reconnect", "stopped", "release"})
# Operations ncdma acts on; any other (future ones) passes at once.
HANDLED = frozenset({"prepare", "start", "started", "migrate", "restore"}) | NEVER_FAIL
_OPT_IN_MARKER = NAMESPACE.encode()


def passes_untouched(argv: Sequence[str], data: bytes) -> bool:
    """True when libvirt's call (``argv`` without the program name, stdin ``data``) is
    none of ncdma's business: an operation ncdma does not handle, or a domain whose XML
    does not mention ncdma's namespace."""
    return len(argv) >= 2 and (argv[1] not in HANDLED or _OPT_IN_MARKER not in data)


def run(argv: Sequence[str], data: bytes) -> HookOutcome:
    """Run the hook for libvirt's ``argv`` (without the program name) and stdin ``data``."""
    import signal

    from ncdma.errors import HookTimeout, NcdmaError
    from ncdma.hook.outcome import HookOutcome

    if len(argv) < 2:
        return HookOutcome(2, stderr="usage: HOOK DOMAIN OPERATION SUB-OPERATION EXTRA "
                                     "(libvirt runs this; domain XML on stdin)")
    if passes_untouched(argv, data):
        return HookOutcome()
    domain_name, operation = argv[0], argv[1]
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
        def _raise_timeout(signum: int, frame: object) -> None:
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
    args = sys.argv[1:] if argv is None else argv
    data = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    if passes_untouched(args, data):
        return 0
    outcome = run(args, data)
    if outcome.stdout:
        sys.stdout.write(outcome.stdout)
    if outcome.stderr:
        sys.stderr.write(outcome.stderr + "\n")
    return outcome.status
