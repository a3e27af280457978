"""The destination's side of `ncdma migrate`: ``ncdma peer ...``, run over SSH by the source.

``preflight`` answers whether this host can honor a migrating domain's policy (ncdma,
its hook and guard service installed, the probe's mode, QEMU's version). ``receive``
writes the tagged slots' content, read on the source, into the incoming QEMU's memory
(caches flushed) and checks it: the stream on stdin is one JSON header line, then each
slot's bytes in the header's order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

from ncdma import __version__
from ncdma.errors import DomainStateError, TransferError
from ncdma.host.report import gather_host_report
from ncdma.host.versions import QEMU_PROGRAMS, program_version, qemu_has_aux_ram_share
from ncdma.linux import cacheflush
from ncdma.linux.slotmem import restore
from ncdma.model.verdict import decide
from ncdma.settings import Settings
from ncdma.store.journal import read_journal
from ncdma.store.status import domain_status, status_json

HOOK_PATH = Path("/etc/libvirt/hooks/qemu.d/50-ncdma")
PEER_SCHEMA_VERSION = 1


def preflight(settings: Settings) -> dict[str, Any]:
    """What the source needs to know about this host before a migration."""
    verdict = decide(gather_host_report(settings.flag))
    qemu = program_version((str(settings.qemu), *QEMU_PROGRAMS))
    return {"schema_version": PEER_SCHEMA_VERSION, "ncdma": __version__,
            "mode": verdict.mode.value, "reasons": list(verdict.reasons), "flag": settings.flag,
            "qemu": qemu, "aux_ram_share": qemu_has_aux_ram_share(str(settings.qemu)),
            "hook_installed": HOOK_PATH.exists(),
            "guard_service": settings.guard_socket.exists(),
            "wrapper": settings.wrapper.exists(), "wrapper_path": str(settings.wrapper)}


def _tagged_slot(journal: dict[str, Any], gpa: int, size: int) -> dict[str, Any]:
    for slot in journal.get("slots", []):
        if slot["gpa"] == gpa and slot["size"] == size and slot["action"] == "tag":
            return slot
    raise TransferError(f"the incoming domain has no tagged slot at {gpa:#x} of {size:#x} "
                        "bytes", "its guard did not tag the slot: see `ncdma status` and the "
                        "ncdma log on this host", gpa)


def receive(settings: Settings, uuid: str, stream: BinaryIO) -> dict[str, Any]:
    """Restore the slots streamed by the source into the incoming domain ``uuid``."""
    journal = read_journal(settings.domain_dir(uuid))
    if journal is None or not journal.get("qemu_pid"):
        raise DomainStateError(f"no guard journal for the incoming domain {uuid} on this host",
                               "was it started through ncdma's wrapper? see the ncdma log", uuid)
    header = json.loads(stream.readline() or b"{}")
    restored = []
    for slot in header.get("slots", []):
        target = _tagged_slot(journal, slot["gpa"], slot["size"])
        data = stream.read(slot["size"])
        if len(data) != slot["size"]:
            raise TransferError(f"slot at {slot['gpa']:#x} arrived short", "retry the migration",
                                slot["gpa"])
        # no checksum of the arrival: the slot's checksum after the write (what a device
        # reads) is compared with the source's, which also catches a damaged stream
        transfer = restore(journal["qemu_pid"], target["hva"], data)
        restored.append({"gpa": slot["gpa"], "size": slot["size"], "slot": target["slot"],
                         "flag_set": target["flag_set"], "sha256": transfer.sha256,
                         "seconds": transfer.seconds})
    return {"schema_version": PEER_SCHEMA_VERSION, "slots": restored,
            "flush": cacheflush.instruction(),
            "status": status_json(domain_status(settings, uuid))}
