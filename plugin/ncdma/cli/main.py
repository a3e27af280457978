"""The ``ncdma`` command line. The only module that prints.

Exit status of every command: 0 ok, 1 refused or failed, 2 usage error.
``ncdma check``: 0 = enforce possible, 1 = audit only or no mode, 2 = usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from ncdma import __version__
from ncdma.cli.check import check_json, check_text
from ncdma.errors import NcdmaError, UsageError
from ncdma.host.report import gather_host_report
from ncdma.host.versions import qemu_and_libvirt_versions
from ncdma.kvm.device import DEFAULT_DEVICE
from ncdma.migrate.options import add_arguments as add_migrate_arguments
from ncdma.model.policy import Bar, Method, MigrationPolicy, PolicyMode
from ncdma.model.verdict import Mode, decide_mode
from ncdma.settings import parse_flag_value
from ncdma.settings import DEFAULT_NON_COHERENT_DMA_FLAG
from ncdma.settings import load_settings

EXIT_OK = 0
EXIT_FAILED = 1

log = logging.getLogger("ncdma")


def _flag_argument(text: str) -> int:
    """argparse type for --flag: turns UsageError into argparse's own usage error."""
    try:
        return parse_flag_value(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run_check(args: argparse.Namespace) -> int:
    """``ncdma check``: probe the host and print the verdict."""
    settings = load_settings() if args.flag is None else None
    flag = settings.flag if settings is not None else args.flag
    report = gather_host_report(flag, args.device, qemu_and_libvirt_versions())
    verdict = decide_mode(report, settings is not None and settings.stand_in)
    if args.json:
        print(json.dumps(check_json(report, verdict), indent=2))
    else:
        print(check_text(report, verdict))
    return EXIT_OK if verdict.methods else EXIT_FAILED


def run_enable(args: argparse.Namespace) -> int:
    """``ncdma enable``: opt a defined domain in, or update its policy."""
    # libvirt-python costs ~30 ms to import: only the commands that talk to libvirt pay it.
    from ncdma.virt.connect import connection
    from ncdma.virt.enable import enable_domain

    options = {name: value for name, value in (("mode", args.mode), ("require", args.require),
               ("migration", args.migration), ("bars", args.bars), ("method", args.method),
               ("allow_uncached_display", args.allow_uncached_display)) if value is not None}
    wrapper = load_settings().wrapper
    with connection(args.connect) as conn:
        policy, running = enable_domain(conn, args.domain, options, str(wrapper))
    attributes = " ".join(f"{key}={value}" for key, value in policy.attributes().items()
                          if key != "emulator")
    print(f"ncdma enabled on {args.domain}: {attributes}; <emulator> is now {wrapper} "
          f"(was {policy.emulator})")
    if running:
        print(f"{args.domain} is running: the change takes effect at its next start")
    return EXIT_OK


def run_disable(args: argparse.Namespace) -> int:
    """``ncdma disable``: opt a defined domain out, restoring its definition."""
    from ncdma.virt.connect import connection
    from ncdma.virt.enable import disable_domain

    with connection(args.connect) as conn:
        running = disable_domain(conn, args.domain)
    print(f"ncdma disabled on {args.domain}: metadata removed, original <emulator> restored")
    if running:
        print(f"{args.domain} is running: the change takes effect at its next start")
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    """``ncdma status``: a running domain's mode, guard and slots."""
    from ncdma.cli.status import status_text
    from ncdma.store.status import domain_status, status_json

    status = domain_status(load_settings(), args.domain)
    if args.json:
        print(json.dumps(status_json(status), indent=2))
    else:
        print(status_text(status))
    healthy = status.guard_alive and not status.mismatches
    return EXIT_OK if healthy or status.plan.mode is Mode.NONE else EXIT_FAILED


def run_migrate(args: argparse.Namespace) -> int:
    """``ncdma migrate``: live-migrate like virsh, carrying tagged slots as the policy says."""
    from ncdma.migrate.options import MigrateOptions
    from ncdma.migrate.progress import ProgressDisplay
    from ncdma.migrate.run import MigrationRun
    from ncdma.virt.connect import connection

    options = MigrateOptions.from_args(args)
    display = ProgressDisplay(sys.stderr, options.verbose, quiet=options.json)
    with connection(args.connect) as conn:
        migration = MigrationRun(options, load_settings(), conn, display)
        try:
            summary = migration.run()
        except NcdmaError as err:
            display.close()
            if options.json:
                migration.summary.error = str(err)
                print(json.dumps(migration.summary.to_json(), indent=2))
            raise
    display.close()
    print(json.dumps(summary.to_json(), indent=2) if options.json else summary.to_text())
    return EXIT_OK


def run_peer(args: argparse.Namespace) -> int:
    """``ncdma peer``: the destination's side of `ncdma migrate` (run over SSH)."""
    from ncdma.migrate import peer

    settings = load_settings()
    if args.operation == "preflight":
        print(json.dumps(peer.preflight(settings)))
        return EXIT_OK
    if args.uuid is None:
        raise UsageError(f"peer {args.operation} needs the domain's UUID")
    if args.operation == "lock":
        return peer.hold_lock(settings, args.uuid, sys.stdin.buffer, sys.stdout)
    if args.operation == "ticket":
        print(json.dumps(peer.ticket(settings, args.uuid)))
        return EXIT_OK
    print(json.dumps(peer.receive(settings, args.uuid, sys.stdin.buffer)))
    return EXIT_OK


def run_guardd(args: argparse.Namespace) -> int:
    """``ncdma guardd``: the root guard service, in the foreground."""
    from ncdma.guard.service import run_service

    return run_service(load_settings())


_Commands = argparse._SubParsersAction  # argparse's type of the subcommands' registry
_Handler = Callable[[argparse.Namespace], int]


def _command(commands: _Commands[argparse.ArgumentParser], name: str, handler: _Handler,
             summary: str, description: str, epilog: str | None = None,
             json_output: bool = False) -> argparse.ArgumentParser:
    """A subcommand run by ``handler`` (``json_output``: with ``--json``)."""
    command: argparse.ArgumentParser = commands.add_parser(name, help=summary,
                                                           description=description,
                                                           epilog=epilog)
    command.set_defaults(handler=handler)
    if json_output:
        command.add_argument("--json", action="store_true", help="print one JSON document")
    return command


def _domain_command(commands: _Commands[argparse.ArgumentParser], name: str, handler: _Handler,
                    summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand that edits one defined domain through libvirt."""
    command = _command(commands, name, handler, summary, description)
    command.add_argument("domain", metavar="DOMAIN", help="the domain's name")
    command.add_argument("-c", "--connect", metavar="URI",
                         help="libvirt connection URI (default: libvirt's default, as virsh)")
    return command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ncdma command."""
    parser = argparse.ArgumentParser(
        prog="ncdma",
        description="Tag virtio-gpu BAR memslots KVM_MEM_NON_COHERENT_DMA for libvirt/QEMU VMs.",
        epilog="Exit status: 0 ok, 1 refused or failed, 2 usage error.")
    parser.add_argument("--version", action="version", version=f"ncdma {__version__}")
    parser.add_argument("--debug", action="store_true", help="log details and tracebacks to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = _command(
        commands, "check", run_check, "report which mode this host can run, and why",
        "Probe this host with real KVM ioctls and report whether ncdma can enforce (tag "
        "virtio-gpu BAR memslots), only audit, or not run at all.",
        "Exit status: 0 enforce possible, 1 audit only or no mode, 2 usage error.",
        json_output=True)
    check.add_argument("--flag", type=_flag_argument, default=None, metavar="VALUE",
                       help="KVM_MEM_NON_COHERENT_DMA's value in the host kernel (default: "
                            f"ncdma.conf's flag, else {DEFAULT_NON_COHERENT_DMA_FLAG:#x}; on a lab "
                            "host with lab_stand_in = yes, the lab's stand-in flag)")
    check.add_argument("--device", default=DEFAULT_DEVICE, metavar="PATH",
                       help=f"the KVM device node (default {DEFAULT_DEVICE})")

    enable = _domain_command(
        commands, "enable", run_enable, "opt a defined domain in (or update its policy)",
        "Add ncdma's policy to a defined domain's <metadata> and make ncdma's wrapper its "
        "<emulator>. Options not given keep their current (or default) value.")
    enable.add_argument("--mode", choices=[m.value for m in PolicyMode],
                        help="enforce (default): tag; audit: journal only; off: leave alone")
    enable.add_argument("--require", choices=["yes", "no"],
                        help="yes: refuse to start where the mode cannot be honored (default no)")
    enable.add_argument("--migration", choices=[m.value for m in MigrationPolicy],
                        help="what a migration may do with tagged slots (default refuse; "
                             "any: accept plain libvirt migrations and restores, unverified)")
    enable.add_argument("--bars", metavar="LIST",
                        help=f"BARs to tag, comma-separated from {', '.join(b.value for b in Bar)}"
                             " (default hostmem)")
    enable.add_argument("--method", choices=[m.value for m in Method],
                        help="slot (default): the flag on memslots; vm: guest PAT honored for "
                             "the whole VM (KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled); auto: "
                             "slot, else vm, else audit")
    enable.add_argument("--allow-uncached-display", choices=["yes", "no"],
                        help="yes: allow method vm with a bochs/stdvga/cirrus display whose "
                             "guest driver maps VRAM write-combining (default no)")

    _domain_command(
        commands, "disable", run_disable, "opt a defined domain out, restoring it exactly",
        "Remove ncdma's metadata and restore the domain's original <emulator>.")

    status = _command(
        commands, "status", run_status, "a running domain's mode, guard health and memslots",
        "Show the mode ncdma runs a domain in and why, whether its guard is alive, and every "
        "memslot with the guard's verdict, cross-checked against QEMU's flat view.",
        "Exit status: 0 guard alive and slots consistent, 1 otherwise, 2 usage error.",
        json_output=True)
    status.add_argument("domain", metavar="DOMAIN", help="the domain's name or UUID")

    migrate = _command(
        commands, "migrate", run_migrate,
        "live-migrate a domain like `virsh migrate`, tagged slots safely",
        "Migrate a running domain the way `virsh migrate` does (same options), after a "
        "preflight of both hosts, carrying its tagged (non-coherent) slots as its policy says: "
        "skip, copy (cache-flushed, verified) or refuse.",
        "Exit status: 0 migrated (or --dry-run), 1 refused or failed (the source keeps running "
        "unless the message says otherwise), 2 usage error.")
    migrate.add_argument("-c", "--connect", metavar="URI",
                         help="the source's libvirt URI (default: libvirt's default, as virsh)")
    add_migrate_arguments(migrate)

    peer = _command(
        commands, "peer", run_peer,
        "the destination's side of `ncdma migrate` (run by it over SSH)",
        "Answer a migrating source: 'preflight' prints this host's readiness as JSON; "
        "'receive UUID' writes the tagged slots streamed on stdin into the incoming domain's "
        "memory, cache-flushed, and prints their checksums; 'ticket UUID' issues the one-time "
        "ticket this host's migrate hook asks of the incoming domain, and prints it.")
    peer.add_argument("operation", choices=["preflight", "receive", "lock", "ticket"])
    peer.add_argument("uuid", nargs="?", metavar="UUID",
                      help="the incoming domain (receive, ticket; lock: held until stdin "
                           "closes)")

    _command(commands, "guardd", run_guardd,
             "run the guard service (root; started by the system, not by hand)",
             "The root service that takes each wrapper's seccomp listener and runs one memslot "
             "guard per domain. Runs in the foreground until SIGTERM.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ncdma command; never lets a traceback reach the operator unless --debug."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="ncdma: %(levelname)s: %(message)s")
    handler: _Handler = args.handler
    try:
        return handler(args)
    except NcdmaError as err:
        print(f"ncdma: error: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("ncdma: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the operator gets one line, --debug the traceback
        log.debug("internal error", exc_info=True)
        print(f"ncdma: internal error: {err!r} (run with --debug for details and report it)",
              file=sys.stderr)
        return EXIT_FAILED
