"""`virsh migrate`'s options, with virsh's names and meanings, as libvirt flags and parameters.

Pure: nothing here talks to libvirt; the flag values are libvirt's public constants
(virDomainMigrateFlags), written out so that the command line can be built and tested
without importing libvirt-python.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ncdma.errors import UsageError

# virDomainMigrateFlags (libvirt-domain.h)
LIVE = 1 << 0
PEER2PEER = 1 << 1
TUNNELLED = 1 << 2
PERSIST_DEST = 1 << 3
UNDEFINE_SOURCE = 1 << 4
PAUSED = 1 << 5
ABORT_ON_ERROR = 1 << 12
AUTO_CONVERGE = 1 << 13
POSTCOPY = 1 << 15

_FLAG_OPTIONS = {"live": LIVE, "p2p": PEER2PEER, "tunnelled": TUNNELLED,
                 "persistent": PERSIST_DEST, "undefinesource": UNDEFINE_SOURCE,
                 "suspend": PAUSED, "abort_on_error": ABORT_ON_ERROR,
                 "auto_converge": AUTO_CONVERGE, "postcopy": POSTCOPY}


@dataclass(frozen=True)
class MigrateOptions:
    """One `ncdma migrate` command line."""

    domain: str
    desturi: str
    migrateuri: str | None = None
    live: bool = False
    p2p: bool = False
    tunnelled: bool = False
    persistent: bool = False
    undefinesource: bool = False
    suspend: bool = False
    abort_on_error: bool = False
    auto_converge: bool = False
    postcopy: bool = False
    listen_address: str | None = None
    bandwidth: int | None = None
    timeout: int | None = None
    dname: str | None = None
    xml: str | None = None
    verbose: bool = False
    json: bool = False
    dry_run: bool = False
    finish: bool = False
    remote_ncdma: str = "/usr/local/libexec/ncdma/ncdma"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MigrateOptions:
        """The options argparse parsed (see :func:`add_arguments`)."""
        values = {name: getattr(args, name) for name in cls.__dataclass_fields__
                  if hasattr(args, name)}
        values["migrateuri"] = args.migrateuri or args.migrateuri_option
        values["desturi"] = args.desturi or ""
        if not values["desturi"] and not getattr(args, "finish", False):
            raise UsageError("DESTURI is missing", "give the destination's libvirt URI, e.g. "
                             "qemu+ssh://host2/system (only --finish works without one)")
        return cls(**values)

    def flags(self, extra: int = 0) -> int:
        """The virDomainMigrateFlags these options ask for, ORed with ``extra``."""
        flags = extra
        for name, flag in _FLAG_OPTIONS.items():
            if getattr(self, name):
                flags |= flag
        return flags

    def params(self, xml: str | None) -> dict[str, Any]:
        """The typed parameters of virDomainMigrate3 (``xml``: --xml's file's content)."""
        params: dict[str, Any] = {}
        for key, value in (("migrate_uri", self.migrateuri),
                           ("listen_address", self.listen_address),
                           ("bandwidth", self.bandwidth), ("destination_name", self.dname),
                           ("destination_xml", xml)):
            if value is not None:
                params[key] = value
        return params


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `virsh migrate`'s options (same names and meanings) and ncdma's own."""
    parser.add_argument("domain", metavar="DOMAIN", help="the running domain's name or UUID")
    parser.add_argument("desturi", metavar="DESTURI", nargs="?",
                        help="the destination's libvirt URI, e.g. qemu+ssh://host2/system")
    parser.add_argument("migrateuri", metavar="MIGRATEURI", nargs="?",
                        help="where QEMU sends the memory (as virsh), e.g. tcp://host2:49152")
    virsh = parser.add_argument_group("virsh migrate options (same names and meanings)")
    virsh.add_argument("--live", action="store_true", help="live migration")
    virsh.add_argument("--p2p", action="store_true", help="peer-2-peer migration")
    virsh.add_argument("--tunnelled", action="store_true", help="tunnelled migration (--p2p)")
    virsh.add_argument("--persistent", action="store_true", help="persist the domain there")
    virsh.add_argument("--undefinesource", action="store_true",
                       help="undefine the domain on this host")
    virsh.add_argument("--suspend", action="store_true",
                       help="leave the domain paused on the destination")
    virsh.add_argument("--abort-on-error", action="store_true",
                       help="abort on soft errors during migration")
    virsh.add_argument("--auto-converge", action="store_true", help="force convergence")
    virsh.add_argument("--postcopy", action="store_true", help="enable post-copy migration")
    virsh.add_argument("--migrateuri", dest="migrateuri_option", metavar="URI",
                       help="migration URI, usually can be omitted")
    virsh.add_argument("--listen-address", metavar="ADDRESS",
                       help="the address the destination QEMU listens on")
    virsh.add_argument("--bandwidth", type=_positive, metavar="MiB/s",
                       help="migration bandwidth limit in MiB/s")
    virsh.add_argument("--timeout", type=_positive, metavar="SECONDS",
                       help="suspend the domain if live migration exceeds SECONDS")
    virsh.add_argument("--dname", metavar="NAME", help="rename the domain while migrating")
    virsh.add_argument("--xml", metavar="FILE",
                       help="a file with an updated XML for the destination")
    virsh.add_argument("--verbose", action="store_true", help="display the progress")
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
