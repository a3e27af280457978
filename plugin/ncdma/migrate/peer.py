"""The destination's side of `ncdma migrate`: ``ncdma peer ...``, run over SSH by the source.

``preflight`` answers whether this host can honor a migrating domain's policy (ncdma,
its hook and guard service installed, the probe's mode, QEMU's version). ``ticket``
issues the one-time ticket this host's ``migrate`` hook will ask of the incoming domain
(:mod:`ncdma.store.tickets`). ``lock`` holds
the domain's migration lock here (:mod:`ncdma.migrate.lock`) until its stdin closes: one
`ncdma migrate` per domain at a time on the destination too. ``receive``
writes the tagged slots' content, read on the source, into the incoming QEMU's memory
(caches flushed) and checks it: the stream on stdin is one JSON header line, then each
slot's bytes in the header's order.

``receive`` writes only into the incoming QEMU of the named domain, found here: the
process its guard serves (the journal root's guard wrote), started for that UUID with
``-incoming``, and paused according to this host's libvirt. Each write is exactly one
slot that the guard journaled as tagged, at its address and of its size.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import libvirt

from ncdma import __version__
from ncdma.errors import DomainStateError, TransferError, UsageError
from ncdma.migrate.lock import acquire
from ncdma.host.report import gather_host_report
from ncdma.host.versions import QEMU_PROGRAMS, program_version, qemu_has_aux_ram_share
from ncdma.linux import cacheflush
from ncdma.linux.peercred import command_line
from ncdma.linux.slotmem import restore
from ncdma.model.slot import SlotRecord
from ncdma.model.verdict import decide_mode
from ncdma.settings import Settings
from ncdma.store.journal import SavedJournal, read_journal
from ncdma.store.status import domain_status, status_json
from ncdma.store.tickets import issue
from ncdma.virt.connect import libvirt_error

HOOK_PATH = Path("/etc/libvirt/hooks/qemu.d/50-ncdma")
PEER_SCHEMA_VERSION = 1
_MAX_HEADER = 1 << 20
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def preflight(settings: Settings) -> dict[str, Any]:
    """What the source needs to know about this host before a migration."""
    verdict = decide_mode(gather_host_report(settings.flag), settings.stand_in)
    qemu = program_version((str(settings.qemu), *QEMU_PROGRAMS))
    return {"schema_version": PEER_SCHEMA_VERSION, "ncdma": __version__,
            "mode": verdict.mode.value, "reasons": list(verdict.reasons), "flag": settings.flag,
            "methods": list(verdict.methods), "vm_reasons": list(verdict.vm_reasons),
            "stand_in": verdict.stand_in,
            "qemu": qemu, "aux_ram_share": qemu_has_aux_ram_share(str(settings.qemu)),
            "hook_installed": HOOK_PATH.exists(),
            "guard_service": settings.guard_socket.exists(),
            "wrapper": settings.wrapper.exists(), "wrapper_path": str(settings.wrapper)}


def _tagged_slot(journal: SavedJournal, gpa: int, size: int) -> SlotRecord:
    for slot in journal.selected():
        if slot.gpa == gpa and slot.size == size:
            return slot
    raise TransferError(f"the incoming domain has no tagged slot at {gpa:#x} of {size:#x} "
                        "bytes", "its guard did not tag the slot: see `ncdma status` and the "
                        "ncdma log on this host", gpa)


def _header_slot(entry: Any) -> tuple[int, int]:
    """(gpa, size) of one slot of the stream's header."""
    gpa = entry.get("gpa") if isinstance(entry, dict) else None
    size = entry.get("size") if isinstance(entry, dict) else None
    if type(gpa) is not int or type(size) is not int or gpa < 0 or size <= 0:
        raise TransferError(f"the stream's header names an invalid slot {entry!r:.80}",
                            "is the same ncdma version installed on both hosts?")
    return gpa, size


def incoming_qemu(uuid: str, journal: SavedJournal) -> int:
    """The pid of domain ``uuid``'s paused incoming QEMU on this host.

    :raise DomainStateError: When the journal's process is not that, or libvirt says
        the domain is not paused.
    :raise LibvirtError: When libvirt cannot tell.
    """
    pid = max(journal.qemu_pid, 0)
    argv = command_line(pid) if pid else []
    named = any(name == "-uuid" and value.lower() == uuid.lower()
                for name, value in zip(argv, argv[1:]))
    if not named or "-incoming" not in argv:
        raise DomainStateError(f"process {pid} is not the incoming QEMU of domain {uuid} on "
                               f"this host", "receive only into a domain migrating here (see "
                               "the ncdma log and `ncdma status`)", uuid)
    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        conn = libvirt.openReadOnly(None)
        try:
            state, _ = conn.lookupByUUIDString(uuid).state()
        finally:
            conn.close()
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"cannot check that domain {uuid} is paused here") from None
    if state != libvirt.VIR_DOMAIN_PAUSED:
        raise DomainStateError(f"the incoming domain {uuid} is not paused (libvirt state "
                               f"{state})", "slots are written only while the destination "
                               "is paused", uuid)
    return pid


def resume(uuid: str) -> dict[str, Any]:
    """Resume the incoming domain ``uuid`` paused on this host (the end of a --p2p copy).

    :raise DomainStateError: When it is not paused here.
    :raise LibvirtError: When libvirt cannot resume it.
    """
    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        conn = libvirt.open(None)
        try:
            domain = conn.lookupByUUIDString(uuid)
            if domain.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                raise DomainStateError(f"domain {uuid} is not paused on this host",
                                       "nothing to resume", uuid)
            domain.resume()
        finally:
            conn.close()
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"cannot resume domain {uuid}") from None
    return {"schema_version": PEER_SCHEMA_VERSION, "resumed": uuid}


def receive(settings: Settings, uuid: str, stream: BinaryIO) -> dict[str, Any]:
    """Restore the slots streamed by the source into the incoming domain ``uuid``.

    The stream's header is awaited first: the source starts this command before libvirt's
    migration, so that its start-up is not part of the downtime. The journal and the
    incoming QEMU are checked once the header has arrived, before anything is written.
    """
    line = stream.readline(_MAX_HEADER)
    if not line:
        raise TransferError("the source sent no slots (its migration ended before the copy)",
                            "nothing was written here")
    try:
        header = json.loads(line)
        slots = list(header.get("slots", []))
    except (ValueError, AttributeError, TypeError):
        raise TransferError("the stream's header is not a JSON object with slots",
                            "is the same ncdma version installed on both hosts?") from None
    journal = read_journal(settings.domain_dir(uuid))
    if journal is None or not journal.qemu_pid:
        raise DomainStateError(f"no guard journal for the incoming domain {uuid} on this host",
                               "was it started through ncdma's wrapper? see the ncdma log", uuid)
    qemu_pid = incoming_qemu(uuid, journal)
    restored = []
    for entry in slots:
        gpa, size = _header_slot(entry)
        target = _tagged_slot(journal, gpa, size)
        data = stream.read(size)
        if len(data) != size:
            raise TransferError(f"slot at {gpa:#x} arrived short", "retry the migration", gpa)
        # no checksum of the arrival: the slot's checksum after the write (what a device
        # reads) is compared with the source's, which also catches a damaged stream
        transfer = restore(qemu_pid, target.hva, data)
        restored.append({"gpa": gpa, "size": size, "slot": target.slot,
                         "flag_set": target.flag_set, "sha256": transfer.sha256,
                         "seconds": transfer.seconds})
    # paused: incoming_qemu checked it before the writes, and only the source resumes it
    return {"schema_version": PEER_SCHEMA_VERSION, "slots": restored,
            "flush": cacheflush.instruction(), "paused": True,
            "status": status_json(domain_status(settings, uuid))}


def hold_lock(settings: Settings, uuid: str, stdin: BinaryIO, stdout: TextIO) -> int:
    """Hold domain ``uuid``'s migration lock until ``stdin`` closes; say so first.

    :raise MigrationBusy: When another `ncdma migrate` holds it.
    """
    descriptor = acquire(settings.state_dir, uuid, uuid)
    try:
        print(json.dumps({"schema_version": PEER_SCHEMA_VERSION, "locked": True}), file=stdout,
              flush=True)
        while stdin.read(4096):
            pass
    finally:
        os.close(descriptor)
    return 0


def ticket(settings: Settings, uuid: str) -> dict[str, Any]:
    """A one-time ticket for domain ``uuid`` migrating to this host.

    :raise UsageError: When ``uuid`` is not a UUID.
    """
    if not _UUID.fullmatch(uuid.lower()):
        raise UsageError(f"peer ticket: {uuid[:40]!r} is not a domain UUID")
    host = os.uname().nodename
    issued = issue(settings.state_dir, uuid.lower(), host, time.time())
    return {"schema_version": PEER_SCHEMA_VERSION, "ticket": issued.token,
            "expires": issued.expires, "host": host}
