"""`ncdma migrate --finish VM`: what this host kept of a copy migration, checked before use.

A copy migration that fails after libvirt's switchover leaves the destination paused and
keeps the source's capture here (:mod:`ncdma.store.capture`). ``--finish`` completes it
from that capture: :func:`kept_capture` finds it and re-reads every slot's file against the
checksum the guard took from QEMU's memory; the rest (write on the paused destination, check
its tags, resume) is the copy migration's own last phases (:mod:`ncdma.migrate.run`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ncdma.errors import MigrationRefused
from ncdma.model.slot import SlotRecord
from ncdma.settings import Settings
from ncdma.store.capture import KeptMigration, find_kept, migration_dir, read_captured

_CHUNK = 1 << 20
_RESUME_BY_HAND = ("`virsh resume` it on the destination only if its tagged content does not "
                   "matter")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def kept_capture(settings: Settings, domain: str) -> tuple[KeptMigration, dict[str, Any]]:
    """The kept migration of ``domain`` (name or UUID) and its capture, every slot's file
    checked against the capture's sha256.

    :raise MigrationRefused: When nothing is kept for it, the capture failed or never
        happened, or a slot's file is missing or differs from its checksum.
    """
    kept = find_kept(settings, domain)
    if kept is None:
        raise MigrationRefused(f"nothing is kept on this host for {domain}: no copy migration "
                               f"of it was left paused from here",
                               "run --finish on the host the migration left, with the domain's "
                               "name or UUID")
    captured = read_captured(settings, kept.uuid)
    if captured is None:
        raise MigrationRefused(f"{kept.domain}'s tagged slots were never captured on this host "
                               f"(its QEMU was not seen exiting)", _RESUME_BY_HAND)
    if captured.get("error") or not captured.get("slots"):
        raise MigrationRefused(f"{kept.domain}'s capture failed: "
                               f"{captured.get('error') or 'no slot captured'}",
                               _RESUME_BY_HAND)
    try:
        for slot in captured["slots"]:
            SlotRecord.from_json(slot)
    except (KeyError, ValueError, TypeError):
        raise MigrationRefused(f"{kept.domain}'s capture record is unreadable",
                               f"is it from another ncdma version? {_RESUME_BY_HAND}") from None
    directory = migration_dir(settings, kept.uuid)
    for slot in captured["slots"]:
        try:
            found = _sha256(directory / slot["file"])
        except OSError as err:
            raise MigrationRefused(f"slot {slot['gpa']:#x}'s kept content cannot be read: "
                                   f"{err.strerror}", _RESUME_BY_HAND) from None
        if found != slot["sha256"]:
            raise MigrationRefused(f"slot {slot['gpa']:#x}'s kept content does not match its "
                                   f"capture (sha256 {found[:16]}, captured "
                                   f"{slot['sha256'][:16]})", _RESUME_BY_HAND)
    return kept, captured
