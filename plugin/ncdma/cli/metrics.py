"""`ncdma metrics`: the host's ncdma metrics in Prometheus's text format, for
node_exporter's textfile collector (``--collector.textfile.directory``).

Written atomically (a temporary file in the same directory, then rename), as the textfile
collector requires, by ``ncdma metrics --textfile DIR/ncdma.prom`` run from cron or a timer
(the role installs /etc/cron.d/ncdma when ``ncdma_metrics_textfile`` is set). Series:

==========================================  =======  ============================================
name                                        type     meaning
==========================================  =======  ============================================
ncdma_host_mode{mode}                       gauge    1 for the mode `ncdma check` allows here
                                                     (enforce, audit, none), 0 for the others
ncdma_guardd_up                             gauge    1 while the guard service listens
ncdma_guard_alive{domain,uuid}              gauge    per domain running with ncdma: its guard
ncdma_tagged_slots{domain,uuid}             gauge    memslots the guard flagged (journal)
ncdma_guard_restarts_total{domain,uuid,     counter  guards replaced by a domain's keeper
reason}                                              (died, stalled)
ncdma_hook_refusals_total{operation}        counter  hook operations that refused or failed
ncdma_migrations_total{outcome}             counter  `ncdma migrate` runs: migrated, refused,
                                                     failed
ncdma_migration_last_downtime_seconds       gauge    the last migration's downtime, per domain
{domain}
==========================================  =======  ============================================

Counters come from the state directory (:mod:`ncdma.store.counters`) and restart from
zero at boot.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ncdma.model.verdict import Mode
from ncdma.settings import Settings
from ncdma.store.counters import read_counters
from ncdma.store.status import DomainStatus

PREFIX = "ncdma_"
# name -> (type, help) of every series recorded by ncdma.store.counters
_RECORDED = {
    "guard_restarts_total": ("counter", "Guards replaced by a domain's keeper, by reason."),
    "hook_refusals_total": ("counter", "libvirt hook operations that refused or failed."),
    "migrations_total": ("counter", "ncdma migrate runs, by outcome."),
    "migration_last_downtime_seconds": ("gauge", "The last ncdma migrate downtime, by domain."),
}


@dataclass
class Family:
    """One metric: its name (without the prefix), type, help and samples."""

    name: str
    kind: str
    help: str
    samples: list[tuple[Mapping[str, str], float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def render(families: Iterable[Family]) -> str:
    """The text exposition format (version 0.0.4) of ``families``."""
    lines = []
    for family in families:
        name = PREFIX + family.name
        lines += [f"# HELP {name} {family.help}", f"# TYPE {name} {family.kind}"]
        for labels, value in family.samples:
            text = ",".join(f'{key}="{_escape(item)}"' for key, item in labels.items())
            lines.append(f"{name}{{{text}}} {_value(value)}" if text else
                         f"{name} {_value(value)}")
    return "\n".join(lines) + "\n"


def listening(socket_path: Path, proc_net_unix: Path = Path("/proc/net/unix")) -> bool:
    """Whether a unix socket bound at ``socket_path`` listens (read from the kernel's table,
    without connecting: a connection would be an attach request to the guard service)."""
    try:
        table = proc_net_unix.read_text().splitlines()[1:]
    except OSError:
        return False
    for line in table:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = accepting
        if len(fields) >= 8 and fields[7] == str(socket_path) and int(fields[3], 16) & 0x10000:
            return True
    return False


def gather(settings: Settings, mode: Mode, statuses: Iterable[DomainStatus]) -> list[Family]:
    """Every family, from the host's mode, the running domains' statuses and the counters."""
    families = [
        Family("host_mode", "gauge", "1 for the mode ncdma check allows on this host.",
               [({"mode": each.value}, float(each is mode)) for each in Mode]),
        Family("guardd_up", "gauge", "1 while the guard service listens on its socket.",
               [({}, float(listening(settings.guard_socket)))]),
        Family("guard_alive", "gauge", "1 while the guard of a domain running with ncdma lives."),
        Family("tagged_slots", "gauge", "Memslots the domain's guard flagged (its journal)."),
    ]
    for status in statuses:
        labels = {"domain": status.plan.domain, "uuid": status.plan.uuid}
        slots = status.journal.slots if status.journal else ()
        families[2].samples.append((labels, float(status.guard_alive)))
        families[3].samples.append((labels, float(sum(1 for slot in slots if slot.flag_set))))
    recorded = read_counters(settings)
    for name, (kind, text) in _RECORDED.items():
        series = recorded.get(name, {})
        families.append(Family(name, kind, text, [(json.loads(key), value) for key, value
                                                  in sorted(series.items())]))
    return families


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (readable by node_exporter's user).

    :raise OSError: When the directory cannot be written.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
