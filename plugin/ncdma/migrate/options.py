"""`virsh migrate`'s options, with virsh's names and meanings, as libvirt flags and parameters.

Every option of `virsh help migrate` (libvirt 9.0, Debian 12's, the oldest ncdma supports;
tests/host/test_virsh_parity.py compares the two lists) is accepted and passed to libvirt as
virsh passes it: a switch as its virDomainMigrateFlags bit, a value as its virDomainMigrate3
typed parameter (a comma-separated list as several values), --xml and --persistent-xml as
the files' contents. The rest is virsh's own behavior, which ncdma keeps:

- the domain and the destination are positional or ``--domain``/``--desturi``;
- ``--p2p`` and ``--direct`` hand the destination URI to the source's libvirt
  (virDomainMigrateToURI3): the client never opens it;
- ``--timeout`` needs ``--live``; when the live migration runs longer, the source is
  suspended (``--timeout-suspend``, the default) or switched to post-copy
  (``--timeout-postcopy``, which needs ``--postcopy``);
- ``--postcopy-after-precopy`` (needs ``--postcopy``) switches to post-copy after the
  first pass of pre-copy;
- progress is shown only with ``--verbose``;
- ``--bandwidth 0`` is libvirt's "no limit", as with virsh.

Pure: nothing here talks to libvirt; the flag values are libvirt's public constants
(virDomainMigrateFlags), written out so that the command line can be built and tested
without importing libvirt-python.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ncdma.errors import UsageError

# virDomainMigrateFlags (libvirt-domain.h)
LIVE = 1 << 0
PEER2PEER = 1 << 1
TUNNELLED = 1 << 2
PERSIST_DEST = 1 << 3
UNDEFINE_SOURCE = 1 << 4
PAUSED = 1 << 5
NON_SHARED_DISK = 1 << 6
NON_SHARED_INC = 1 << 7
CHANGE_PROTECTION = 1 << 8
UNSAFE = 1 << 9
OFFLINE = 1 << 10
COMPRESSED = 1 << 11
ABORT_ON_ERROR = 1 << 12
AUTO_CONVERGE = 1 << 13
RDMA_PIN_ALL = 1 << 14
POSTCOPY = 1 << 15
TLS = 1 << 16
PARALLEL = 1 << 17
NON_SHARED_SYNCHRONOUS_WRITES = 1 << 18
POSTCOPY_RESUME = 1 << 19
ZEROCOPY = 1 << 20

# virsh's switches that are a flag bit, with virsh's help
FLAG_OPTIONS: dict[str, tuple[int, str]] = {
    "live": (LIVE, "live migration"),
    "offline": (OFFLINE, "offline migration"),
    "p2p": (PEER2PEER, "peer-2-peer migration"),
    "tunnelled": (TUNNELLED, "tunnelled migration"),
    "persistent": (PERSIST_DEST, "persist VM on destination"),
    "undefinesource": (UNDEFINE_SOURCE, "undefine VM on source"),
    "suspend": (PAUSED, "do not restart the domain on the destination host"),
    "copy-storage-all": (NON_SHARED_DISK, "migration with non-shared storage with full disk "
                                          "copy"),
    "copy-storage-inc": (NON_SHARED_INC, "migration with non-shared storage with incremental "
                                         "copy"),
    "copy-storage-synchronous-writes": (NON_SHARED_SYNCHRONOUS_WRITES, "force guest disk "
                                        "writes to be synchronously written to the destination"),
    "change-protection": (CHANGE_PROTECTION, "prevent any configuration changes to domain "
                                             "until migration ends"),
    "unsafe": (UNSAFE, "force migration even if it may be unsafe"),
    "compressed": (COMPRESSED, "compress repeated pages during live migration"),
    "auto-converge": (AUTO_CONVERGE, "force convergence during live migration"),
    "rdma-pin-all": (RDMA_PIN_ALL, "pin all memory before starting RDMA live migration"),
    "abort-on-error": (ABORT_ON_ERROR, "abort on soft errors during migration"),
    "postcopy": (POSTCOPY, "enable post-copy migration"),
    "postcopy-resume": (POSTCOPY_RESUME, "resume failed post-copy migration"),
    "zerocopy": (ZEROCOPY, "use zero-copy mechanism for migrating memory pages"),
    "tls": (TLS, "use TLS for migration"),
    "parallel": (PARALLEL, "enable parallel migration"),
}
# virsh's switches that steer virsh itself (no flag bit)
OWN_SWITCHES: dict[str, str] = {
    "direct": "direct migration (the source's libvirt opens the destination URI)",
    "verbose": "display the progress of migration",
    "postcopy-after-precopy": "automatically switch to post-copy migration after one pass of "
                              "pre-copy (needs --postcopy)",
    "timeout-suspend": "suspend the guest after --timeout",
    "timeout-postcopy": "switch to post-copy after --timeout (needs --postcopy)",
}


@dataclass(frozen=True)
class ParamOption:
    """A virsh option with a value, passed as the virDomainMigrate3 parameter ``param``."""

    param: str
    kind: str  # "string", "list" (comma-separated, several values), "number"
    help: str


PARAM_OPTIONS: dict[str, ParamOption] = {
    "migrateuri": ParamOption("migrate_uri", "string", "migration URI, usually can be omitted"),
    "graphicsuri": ParamOption("graphics_uri", "string", "graphics URI to be used for "
                               "seamless graphics migration"),
    "listen-address": ParamOption("listen_address", "string", "listen address that destination "
                                  "should bind to for incoming migration"),
    "dname": ParamOption("destination_name", "string", "rename to new name during migration"),
    "migrate-disks": ParamOption("migrate_disks", "list", "comma separated list of disks to "
                                 "be migrated"),
    "disks-port": ParamOption("disks_port", "number", "port to use by target server for "
                              "incoming disks migration"),
    "disks-uri": ParamOption("disks_uri", "string", "URI to use for disks migration "
                             "(overrides --disks-port)"),
    "comp-methods": ParamOption("compression", "list", "comma separated list of compression "
                                "methods to be used"),
    "comp-mt-level": ParamOption("compression.mt.level", "number", "compress level for "
                                 "multithread compression"),
    "comp-mt-threads": ParamOption("compression.mt.threads", "number", "number of compression "
                                   "threads for multithread compression"),
    "comp-mt-dthreads": ParamOption("compression.mt.dthreads", "number", "number of "
                                    "decompression threads for multithread compression"),
    "comp-xbzrle-cache": ParamOption("compression.xbzrle.cache", "number", "page cache size "
                                     "for xbzrle compression"),
    "auto-converge-initial": ParamOption("auto_converge.initial", "number", "initial CPU "
                                         "throttling rate for auto-convergence"),
    "auto-converge-increment": ParamOption("auto_converge.increment", "number", "CPU "
                                           "throttling rate increment for auto-convergence"),
    "postcopy-bandwidth": ParamOption("bandwidth.postcopy", "number", "post-copy migration "
                                      "bandwidth limit in MiB/s"),
    "parallel-connections": ParamOption("parallel.connections", "number", "number of "
                                        "connections for parallel migration"),
    "bandwidth": ParamOption("bandwidth", "number", "migration bandwidth limit in MiB/s "
                             "(0: no limit)"),
    "tls-destination": ParamOption("tls.destination", "string", "override the destination "
                                   "host name used for TLS verification"),
}
# options whose value is a file, passed as the file's content
FILE_OPTIONS: dict[str, ParamOption] = {
    "xml": ParamOption("destination_xml", "file", "filename containing updated XML for the "
                       "target"),
    "persistent-xml": ParamOption("persistent_xml", "file", "filename containing updated "
                                  "persistent XML for the target"),
}
TIMEOUT_HELP = ("run the action of --timeout-suspend (the default) or --timeout-postcopy if "
                "live migration exceeds SECONDS")


def virsh_option_names() -> set[str]:
    """Every option name of `virsh migrate` that ncdma accepts (without the dashes)."""
    return {"domain", "desturi", "timeout", *FLAG_OPTIONS, *OWN_SWITCHES, *PARAM_OPTIONS,
            *FILE_OPTIONS}


def _dest(name: str) -> str:
    return name.replace("-", "_")


@dataclass(frozen=True)
class MigrateOptions:
    """One `ncdma migrate` command line."""

    domain: str
    desturi: str
    live: bool = False
    p2p: bool = False
    direct: bool = False
    offline: bool = False
    persistent: bool = False
    suspend: bool = False
    postcopy: bool = False
    postcopy_after_precopy: bool = False
    timeout: int | None = None
    timeout_suspend: bool = False
    timeout_postcopy: bool = False
    xml: str | None = None
    persistent_xml: str | None = None
    verbose: bool = False
    json: bool = False
    dry_run: bool = False
    finish: bool = False
    remote_ncdma: str = "/usr/local/libexec/ncdma/ncdma"
    # every other virsh option given: its name (as in FLAG_OPTIONS / PARAM_OPTIONS) -> value
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MigrateOptions:
        """The options argparse parsed (see :func:`add_arguments`).

        :raise UsageError: When virsh would refuse the combination.
        """
        own = {name for name in cls.__dataclass_fields__ if name != "more"}
        values = {name: getattr(args, name) for name in own if hasattr(args, name)}
        values["domain"] = _one(args, "domain")
        # --finish: the migration's own destination unless one is given
        values["desturi"] = _one(args, "desturi", optional=bool(getattr(args, "finish", False)))
        given = {name: getattr(args, _dest(name)) for name in (*FLAG_OPTIONS, *PARAM_OPTIONS)
                 if _dest(name) not in own}
        # `is`: --bandwidth 0 is a value (no limit), not an option left out
        more = {name: value for name, value in given.items()
                if value is not None and value is not False}
        if args.migrateuri_positional is not None:
            if "migrateuri" in more:
                raise UsageError("MIGRATEURI given twice (as an argument and as --migrateuri)")
            more["migrateuri"] = args.migrateuri_positional
        options = cls(**values, more=more)
        options.check()
        return options

    def check(self) -> None:
        """virsh's rules between options.

        :raise UsageError: When an option needs another one, or excludes it.
        """
        if self.timeout_suspend and self.timeout_postcopy:
            raise UsageError("--timeout-suspend and --timeout-postcopy exclude each other "
                             "(as with virsh migrate)")
        needs = [("timeout-suspend", self.timeout_suspend, "timeout", self.timeout is not None),
                 ("timeout-postcopy", self.timeout_postcopy, "timeout", self.timeout is not None),
                 ("timeout-postcopy", self.timeout_postcopy, "postcopy", self.postcopy),
                 ("postcopy-after-precopy", self.postcopy_after_precopy, "postcopy",
                  self.postcopy),
                 ("timeout", self.timeout is not None, "live", self.live)]
        for option, given, required, present in needs:
            if given and not present:
                raise UsageError(f"--{option} needs --{required} (as with virsh migrate)")

    @property
    def source_opens_destination(self) -> bool:
        """--p2p or --direct: the source's libvirt opens DESTURI, the client never does."""
        return self.p2p or self.direct

    def flags(self, extra: int = 0) -> int:
        """The virDomainMigrateFlags these options ask for, ORed with ``extra``."""
        flags = extra
        for name, (flag, _help) in FLAG_OPTIONS.items():
            if getattr(self, _dest(name), False) or self.more.get(name):
                flags |= flag
        return flags

    def params(self, xml: str | None, persistent_xml: str | None = None) -> dict[str, Any]:
        """The typed parameters of virDomainMigrate3 (``xml``, ``persistent_xml``: the
        contents of --xml's and --persistent-xml's files)."""
        params: dict[str, Any] = {}
        for name, option in PARAM_OPTIONS.items():
            value = self.more.get(name)
            if value is not None:
                params[option.param] = value.split(",") if option.kind == "list" else value
        for option, content in ((FILE_OPTIONS["xml"], xml),
                                (FILE_OPTIONS["persistent-xml"], persistent_xml)):
            if content is not None:
                params[option.param] = content
        return params


def _one(args: argparse.Namespace, name: str, optional: bool = False) -> str:
    """The value of an argument virsh takes as positional or as --NAME ("" when optional
    and not given)."""
    positional, option = getattr(args, name), getattr(args, f"{name}_option")
    if positional is None and option is None:
        if optional:
            return ""
        raise UsageError(f"{name.upper()} is missing", f"give it as an argument or as "
                         f"--{name}" + (" (only --finish works without one)"
                                        if name == "desturi" else ""))
    if positional is not None and option is not None:
        raise UsageError(f"{name.upper()} given twice: as an argument and as --{name}")
    return str(positional if positional is not None else option)


def _number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, "
                                             f"got {text!r}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `virsh migrate`'s options (same names and meanings) and ncdma's own."""
    parser.add_argument("domain", metavar="DOMAIN", nargs="?",
                        help="the running domain's name, UUID or ID (or --domain)")
    parser.add_argument("desturi", metavar="DESTURI", nargs="?",
                        help="the destination's libvirt URI, e.g. qemu+ssh://host2/system "
                             "(or --desturi)")
    parser.add_argument("migrateuri_positional", metavar="MIGRATEURI", nargs="?",
                        help="where QEMU sends the memory (as --migrateuri)")
    virsh = parser.add_argument_group("virsh migrate options (same names and meanings)")
    virsh.add_argument("--domain", dest="domain_option", metavar="DOMAIN",
                       help="domain name, id or uuid")
    virsh.add_argument("--desturi", dest="desturi_option", metavar="URI",
                       help="connection URI of the destination host")
    for name, (_flag, text) in FLAG_OPTIONS.items():
        virsh.add_argument(f"--{name}", action="store_true", help=text)
    for name, text in OWN_SWITCHES.items():
        virsh.add_argument(f"--{name}", action="store_true", help=text)
    for name, option in PARAM_OPTIONS.items():
        number = option.kind == "number"
        virsh.add_argument(f"--{name}", type=_number(0) if number else str,
                           metavar="NUMBER" if number else "STRING", help=option.help)
    for name, option in FILE_OPTIONS.items():
        virsh.add_argument(f"--{name}", metavar="FILE", help=option.help)
    virsh.add_argument("--timeout", type=_number(1), metavar="SECONDS", help=TIMEOUT_HELP)
    own = parser.add_argument_group("ncdma's own options")
    own.add_argument("--json", action="store_true",
                     help="print a JSON summary (phases, downtime, bytes, every tagged slot)")
    own.add_argument("--dry-run", action="store_true",
                     help="print what would be done, change nothing")
    own.add_argument("--finish", action="store_true",
                     help="complete a copy migration that left DOMAIN paused on its "
                          "destination, from the capture kept on this host: checksums checked, "
                          "slots written there, tags checked, then resumed (DESTURI: the "
                          "migration's own unless given)")
    own.add_argument("--remote-ncdma", default=MigrateOptions.remote_ncdma, metavar="PATH",
                     help="ncdma on the destination, run over SSH (default %(default)s)")
