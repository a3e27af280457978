"""`ncdma enable`, `ncdma disable` and `ncdma list`: the domains opted in, through libvirt.

A domain is named by its ID, UUID or name, as with virsh. enable and disable say whether
they changed the persistent definition (``changed``), so that a tool (the Ansible role)
can use them declaratively.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ncdma.cli.common import EXIT_OK, emit, require_root
from ncdma.errors import PolicyError, UsageError
from ncdma.model.policy import parse_policy
from ncdma.settings import load_settings

if TYPE_CHECKING:
    from ncdma.virt.enable import Change


def bars_argument(text: str) -> str:
    """argparse type for --bars: a bad list is a usage error (exit 2), named as such."""
    try:
        parse_policy({"bars": text})
    except PolicyError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _change_json(change: Change) -> dict[str, Any]:
    document = {"domain": change.name, "uuid": change.uuid, "changed": change.changed,
                "running": change.running}
    if change.policy is not None:
        document["policy"] = change.policy.attributes()
    return document


def _change_text(change: Change, verb: str, detail: str) -> str:
    if not change.changed:
        return f"ncdma already {verb} on {change.name}: nothing changed"
    text = f"ncdma {verb} on {change.name}: {detail}"
    if change.running:
        text += f"\n{change.name} is running: the change takes effect at its next start"
    return text


def run_enable(args: argparse.Namespace) -> int:
    """``ncdma enable``: opt a defined domain in, or update its policy."""
    require_root("ncdma enable", args.connect)
    # libvirt-python costs ~30 ms to import: only the commands that talk to libvirt pay it.
    from ncdma.virt.connect import connection
    from ncdma.virt.enable import enable_domain

    options = {name: value for name, value in (("mode", args.mode), ("require", args.require),
               ("migration", args.migration), ("bars", args.bars), ("method", args.method),
               ("allow_uncached_display", args.allow_uncached_display)) if value is not None}
    wrapper = load_settings().wrapper
    with connection(args.connect) as conn:
        change = enable_domain(conn, args.domain, options, str(wrapper))
    assert change.policy is not None
    attributes = " ".join(f"{key}={value}" for key, value in change.policy.attributes().items()
                          if key != "emulator")
    emit(args, _change_json(change), _change_text(
        change, "enabled", f"{attributes}; <emulator> is now {wrapper} "
                           f"(was {change.policy.emulator})"))
    return EXIT_OK


def run_disable(args: argparse.Namespace) -> int:
    """``ncdma disable``: opt a defined domain out (or, with --all, every one), restoring its
    definition exactly."""
    if args.all == (args.domain is not None):
        raise UsageError("name one DOMAIN or give --all", "see `ncdma disable --help`")
    require_root("ncdma disable", args.connect)
    from ncdma.virt.connect import connection
    from ncdma.virt.enable import disable_domain
    from ncdma.virt.lookup import opted_in_domains

    with connection(args.connect) as conn:
        names = ([domain.uuid for domain in opted_in_domains(conn, str(load_settings().wrapper))]
                 if args.all else [args.domain])
        changes = [disable_domain(conn, name) for name in names]
    detail = "metadata removed, original <emulator> restored"
    if not args.all:
        emit(args, _change_json(changes[0]), _change_text(changes[0], "disabled", detail))
        return EXIT_OK
    text = "\n".join(_change_text(change, "disabled", detail) for change in changes)
    emit(args, {"domains": [_change_json(change) for change in changes]},
         text or "no domain is opted in to ncdma: nothing to disable")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    """``ncdma list``: the defined domains that opt in to ncdma."""
    require_root("ncdma list", args.connect)
    from ncdma.virt.connect import connection
    from ncdma.virt.lookup import opted_in_domains

    with connection(args.connect) as conn:
        domains = opted_in_domains(conn, str(load_settings().wrapper))
    lines = [f"{domain.name}  {domain.uuid}  {'running' if domain.running else 'shut off'}"
             + ("" if domain.wrapper else "  (metadata only: its <emulator> is not ncdma's)")
             for domain in domains]
    emit(args, {"domains": [domain.to_json() for domain in domains]},
         "\n".join(lines) or "no domain is opted in to ncdma")
    return EXIT_OK
