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
from pathlib import Path
from typing import TYPE_CHECKING

from ncdma import __version__
from ncdma.cli.check import check_json, check_text
from ncdma.cli.common import (EXIT_FAILED, EXIT_OK, Parser, add_json, emit, error_document,
                              print_error, require_root)
from ncdma.cli.domains import bars_argument, run_disable, run_enable, run_list
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

if TYPE_CHECKING:
    from ncdma.store.status import DomainStatus

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
    emit(args, check_json(report, verdict), check_text(report, verdict))
    return EXIT_OK if verdict.methods else EXIT_FAILED


def run_status(args: argparse.Namespace) -> int:
    """``ncdma status [DOMAIN]``: a running domain's mode, guard and slots; all without one."""
    from ncdma.cli.status import status_text, summary_text
    from ncdma.store.status import domain_status, plan_status, running_plans, status_json

    require_root("ncdma status", None)
    settings = load_settings()
    if args.domain is None:
        statuses = [plan_status(settings, plan) for plan in running_plans(settings)]
        emit(args, {"domains": [status_json(status) for status in statuses]},
             summary_text(statuses))
        return EXIT_OK if all(_healthy(status) for status in statuses) else EXIT_FAILED
    status = domain_status(settings, _status_reference(args.domain))
    emit(args, status_json(status), status_text(status))
    return EXIT_OK if _healthy(status) else EXIT_FAILED


def _healthy(status: DomainStatus) -> bool:
    return (status.guard_alive and not status.mismatches) or status.plan.mode is Mode.NONE


def _status_reference(reference: str) -> str:
    """A domain ID becomes its UUID (libvirt knows IDs; the state directory does not)."""
    if not reference.isdigit():
        return reference
    from ncdma.virt.connect import connection
    from ncdma.virt.lookup import lookup_domain

    with connection(None) as conn:
        return str(lookup_domain(conn, reference).UUIDString())


def run_migrate(args: argparse.Namespace) -> int:
    """``ncdma migrate``: live-migrate like virsh, carrying tagged slots as the policy says."""
    require_root("ncdma migrate", args.connect)
    from ncdma.logs import configure_logging
    from ncdma.migrate.options import MigrateOptions
    from ncdma.migrate.progress import ProgressDisplay
    from ncdma.migrate.record import record_run
    from ncdma.migrate.run import MigrationRun
    from ncdma.migrate.summary import Summary
    from ncdma.virt.connect import connection

    options = MigrateOptions.from_args(args)
    settings = load_settings()
    log = configure_logging(settings, "migrate")
    display = ProgressDisplay(sys.stderr, quiet=options.json or not options.verbose)
    summary = Summary(options.domain, options.desturi)
    try:
        with connection(args.connect) as conn:
            migration = MigrationRun(options, settings, conn, display)
            summary = migration.summary
            summary = migration.run()
    except NcdmaError as err:
        display.close()
        record_run(settings, summary, err, log)
        if not options.json:
            raise
        # the summary so far, its error as every command's --json failure says it
        print(json.dumps({**summary.to_json(), "error": error_document(err)["error"]}, indent=2))
        print_error(err, False)
        return err.exit_status
    display.close()
    record_run(settings, summary, None, log)
    print(json.dumps(summary.to_json(), indent=2) if options.json else summary.to_text())
    return EXIT_OK


def run_metrics(args: argparse.Namespace) -> int:
    """``ncdma metrics``: the Prometheus textfile (printed, or written atomically)."""
    require_root("ncdma metrics", None)
    from ncdma.cli.metrics import gather, render, write_textfile
    from ncdma.errors import StateFileError
    from ncdma.store.status import plan_status, running_plans

    settings = load_settings()
    report = gather_host_report(settings.flag, DEFAULT_DEVICE, qemu_and_libvirt_versions())
    mode = decide_mode(report, settings.stand_in).mode
    families = gather(settings, mode, [plan_status(settings, plan)
                                       for plan in running_plans(settings)])
    text = render(families)
    if args.textfile is None:
        emit(args, {"families": [{"name": family.name, "type": family.kind,
                                  "samples": [{"labels": dict(labels), "value": value}
                                              for labels, value in family.samples]}
                                 for family in families]}, text.rstrip("\n"))
        return EXIT_OK
    try:
        write_textfile(args.textfile, text)
    except OSError as err:
        raise StateFileError(f"cannot write {args.textfile}: {err.strerror}",
                             "give a file in node_exporter's textfile directory, which must "
                             "exist", args.textfile) from None
    emit(args, {"textfile": str(args.textfile)}, f"wrote {args.textfile}")
    return EXIT_OK


def run_completion(args: argparse.Namespace) -> int:
    """``ncdma completion bash``: the bash completion script, from the parser."""
    from ncdma.cli.docs import bash_completion

    emit(args, {"shell": args.shell, "script": bash_completion(build_parser())},
         bash_completion(build_parser()).rstrip("\n"))
    return EXIT_OK


def run_manpage(args: argparse.Namespace) -> int:
    """``ncdma manpage``: ncdma(8) in roff, from the parser."""
    from ncdma.cli.docs import manpage

    emit(args, {"roff": manpage(build_parser())}, manpage(build_parser()).rstrip("\n"))
    return EXIT_OK


def run_install_files(args: argparse.Namespace) -> int:
    """``ncdma install-files``: the hook, unit, logrotate rules, schema, sample settings,
    completion and man page, from the package data; what changed."""
    from ncdma.cli.files import install_files, remove_files
    from ncdma.errors import StateFileError

    if args.root == Path("/"):
        require_root("ncdma install-files", None)
    systemd = {"yes": True, "no": False}.get(args.systemd, Path("/run/systemd/system").is_dir())
    try:
        if args.remove:
            changed = remove_files(build_parser(), args.root)
        else:
            changed = install_files(build_parser(), args.root, systemd)
    except OSError as err:
        raise StateFileError(f"cannot write {err.filename}: {err.strerror}",
                             "run it as root (or give --root a directory you may write)",
                             err.filename) from None
    verb = "removed" if args.remove else "installed"
    emit(args, {"changed": changed},
         "\n".join(f"{verb} {path}" for path in changed) or "nothing to do")
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
    if args.operation == "resume":
        print(json.dumps(peer.resume(args.uuid)))
        return EXIT_OK
    if args.operation == "ticket":
        print(json.dumps(peer.ticket(settings, args.uuid)))
        return EXIT_OK
    print(json.dumps(peer.receive(settings, args.uuid, sys.stdin.buffer)))
    return EXIT_OK


def run_guardd(args: argparse.Namespace) -> int:
    """``ncdma guardd``: the root guard service, in the foreground."""
    from ncdma.guard.service import run_service

    require_root("ncdma guardd", None)
    return run_service(load_settings())


_Commands = argparse._SubParsersAction  # argparse's type of the subcommands' registry
_Handler = Callable[[argparse.Namespace], int]


def _command(commands: _Commands[Parser], name: str, handler: _Handler, summary: str,
             description: str, epilog: str | None = None) -> Parser:
    """A subcommand run by ``handler``, with ``--json`` (every command has it)."""
    command: Parser = commands.add_parser(name, help=summary, description=description,
                                          epilog=epilog)
    command.set_defaults(handler=handler)
    add_json(command)
    return command


def _domain_command(commands: _Commands[Parser], name: str, handler: _Handler, summary: str,
                    description: str) -> Parser:
    """A subcommand that works on defined domains through libvirt."""
    command = _command(commands, name, handler, summary, description)
    command.add_argument("-c", "--connect", metavar="URI",
                         help="libvirt connection URI (default: the system's, as root)")
    return command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ncdma command."""
    parser = Parser(
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
        "Exit status: 0 enforce possible, 1 audit only or no mode, 2 usage error.")
    check.add_argument("--flag", type=_flag_argument, default=None, metavar="VALUE",
                       help="KVM_MEM_NON_COHERENT_DMA's value in the host kernel (default: "
                            f"ncdma.conf's flag, else {DEFAULT_NON_COHERENT_DMA_FLAG:#x}; on a lab "
                            "host with lab_stand_in = yes, the lab's stand-in flag)")
    check.add_argument("--device", default=DEFAULT_DEVICE, metavar="PATH",
                       help=f"the KVM device node (default {DEFAULT_DEVICE})")

    enable = _domain_command(
        commands, "enable", run_enable, "opt a defined domain in (or update its policy)",
        "Add ncdma's policy to a defined domain's <metadata> and make ncdma's wrapper its "
        "<emulator>. Options not given keep their current (or default) value. Says "
        "whether the definition changed (with --json: \"changed\").")
    enable.add_argument("domain", metavar="DOMAIN", help="the domain's name, UUID or ID")
    enable.add_argument("--mode", choices=[m.value for m in PolicyMode],
                        help="enforce (default): tag; audit: journal only; off: leave alone")
    enable.add_argument("--require", choices=["yes", "no"],
                        help="yes: refuse to start where the mode cannot be honored (default no)")
    enable.add_argument("--migration", choices=[m.value for m in MigrationPolicy],
                        help="what a migration may do with tagged slots (default refuse; "
                             "any: accept plain libvirt migrations and restores, unverified)")
    enable.add_argument("--bars", metavar="LIST", type=bars_argument,
                        help=f"BARs to tag, comma-separated from {', '.join(b.value for b in Bar)}"
                             " (default hostmem)")
    enable.add_argument("--method", choices=[m.value for m in Method],
                        help="slot (default): the flag on memslots; vm: guest PAT honored for "
                             "the whole VM (KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled); auto: "
                             "slot, else vm, else audit")
    enable.add_argument("--allow-uncached-display", choices=["yes", "no"],
                        help="yes: allow method vm with a bochs/stdvga/cirrus display whose "
                             "guest driver maps VRAM write-combining (default no)")

    disable = _domain_command(
        commands, "disable", run_disable, "opt a defined domain out, restoring it exactly",
        "Remove ncdma's metadata and restore the domain's original <emulator>.")
    disable.add_argument("domain", metavar="DOMAIN", nargs="?",
                         help="the domain's name, UUID or ID")
    disable.add_argument("--all", action="store_true",
                         help="every defined domain that opts in (see `ncdma list`)")

    _domain_command(
        commands, "list", run_list, "the defined domains that opt in to ncdma",
        "List every persistent domain whose definition has ncdma's metadata or names ncdma's "
        "wrapper as its <emulator> (such a domain cannot start without ncdma: `ncdma disable` "
        "it before removing ncdma).")

    status = _command(
        commands, "status", run_status,
        "a running domain's mode, guard health and memslots (all without one)",
        "Show the mode ncdma runs a domain in and why, whether its guard is alive, and every "
        "memslot with the guard's verdict, cross-checked against QEMU's flat view. Without "
        "DOMAIN: one line for every domain running with ncdma.",
        "Exit status: 0 guard alive and slots consistent (every domain's), 1 otherwise, 2 "
        "usage error.")
    status.add_argument("domain", metavar="DOMAIN", nargs="?",
                        help="the domain's name, UUID or ID")

    migrate = commands.add_parser(
        "migrate", help="live-migrate a domain like `virsh migrate`, tagged slots safely",
        description="Migrate a running domain the way `virsh migrate` does (same options), "
                    "after a preflight of both hosts, carrying its tagged (non-coherent) slots "
                    "as its policy says: skip, copy (cache-flushed, verified) or refuse.",
        epilog="Exit status: 0 migrated (or --dry-run), 1 refused or failed (the source keeps "
               "running unless the message says otherwise), 2 usage error.")
    migrate.set_defaults(handler=run_migrate)  # its own --json: ncdma migrate's options
    migrate.add_argument("-c", "--connect", metavar="URI",
                         help="the source's libvirt URI (default: libvirt's default, as virsh)")
    add_migrate_arguments(migrate)

    metrics = _command(
        commands, "metrics", run_metrics,
        "this host's ncdma metrics for Prometheus (node_exporter's textfile)",
        "Print this host's ncdma metrics in Prometheus's text format (host mode, guard service "
        "up, guards alive and restarted, tagged slots by domain, hook refusals, migrations by "
        "outcome, last downtime), or write them atomically to a file of node_exporter's "
        "textfile collector directory. `pydoc ncdma.cli.metrics` lists every series.")
    metrics.add_argument("--textfile", type=Path, metavar="PATH",
                         help="write here (atomically) instead of printing, e.g. "
                              "/var/lib/prometheus/node-exporter/ncdma.prom")

    peer = _command(
        commands, "peer", run_peer,
        "the destination's side of `ncdma migrate` (run by it over SSH)",
        "Answer a migrating source: 'preflight' prints this host's readiness as JSON; "
        "'receive UUID' writes the tagged slots streamed on stdin into the incoming domain's "
        "memory, cache-flushed, and prints their checksums; 'ticket UUID' issues the one-time "
        "ticket this host's migrate hook asks of the incoming domain, and prints it; 'resume "
        "UUID' resumes the paused incoming domain (--p2p). Its answers are JSON with or "
        "without --json.")
    peer.add_argument("operation", choices=["preflight", "receive", "lock", "ticket", "resume"])
    peer.add_argument("uuid", nargs="?", metavar="UUID",
                      help="the incoming domain (receive, ticket; resume: the paused one; lock: "
                           "held until stdin closes)")

    completion = _command(
        commands, "completion", run_completion, "print the shell completion script",
        "Print a completion script generated from this command line, e.g. "
        "`ncdma completion bash > /usr/share/bash-completion/completions/ncdma`.")
    completion.add_argument("shell", choices=["bash"], help="the shell")
    install = _command(
        commands, "install-files", run_install_files,
        "install the hook, unit, logrotate rules, schema, sample settings, completion, man page",
        "Install the files ncdma needs outside its Python package, from the package data of "
        "this installation: the libvirt hook (run by this Python), ncdma-guardd.service (with "
        "this prefix), /etc/logrotate.d/ncdma, the metadata schema and a sample ncdma.conf "
        "under /usr/local/share, the bash completion and ncdma(8). Only what differs is "
        "written; the answer lists it (--json: \"changed\").")
    install.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                         help="install under DIR instead of / (default /)")
    install.add_argument("--systemd", choices=["auto", "yes", "no"], default="auto",
                         help="install ncdma-guardd.service too (auto: where systemd runs)")
    install.add_argument("--remove", action="store_true",
                         help="remove every file it installs instead (before uninstalling)")
    _command(commands, "manpage", run_manpage, "print the man page ncdma(8)",
             "Print ncdma(8) in roff, generated from this command line, e.g. "
             "`ncdma manpage > /usr/share/man/man8/ncdma.8`.")

    _command(commands, "guardd", run_guardd,
             "run the guard service (root; started by the system, not by hand)",
             "The root service that takes each wrapper's seccomp listener and runs one memslot "
             "guard per domain. Runs in the foreground until SIGTERM (--json: its failures).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ncdma command; never lets a traceback reach the operator unless --debug."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        print_error(err, "--json" in argv)
        return err.exit_status
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="ncdma: %(levelname)s: %(message)s")
    handler: _Handler = args.handler
    try:
        return handler(args)
    except NcdmaError as err:
        print_error(err, getattr(args, "json", False))
        return err.exit_status
    except KeyboardInterrupt:
        print("ncdma: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the operator gets one line, --debug the traceback
        log.debug("internal error", exc_info=True)
        print(f"ncdma: internal error: {err!r} (run with --debug for details and report it)",
              file=sys.stderr)
        return EXIT_FAILED
