"""The files of a capture: the tagged slots' content at the source's last moment (`--copy`).

Why at exit: the content must be read while the guest is paused for good, and from the
memory itself, never from QEMU's migration stream (a non-snooping device's writes are
invisible to KVM's dirty log, so precopy can carry stale pages). After libvirt's
switchover the source's vCPUs never run again and libvirt ends QEMU; for domains that
migrate with copy the wrapper traps QEMU's exit_group, so the guard can read the slots
(caches flushed) while QEMU's memory is still mapped, then let it exit. This is
deterministic: QEMU cannot exit before the guard has answered.

Files, in ``<state_dir>/migrations/<uuid>/`` (the stop hooks never remove them):
``capture.json`` the request (slots to read), written by `ncdma migrate` before it
starts the migration and removed when the migration fails; ``captured.json`` the result
with a sha256 per slot, and ``slot-<gpa>.bin`` the content, written by the guard;
``migration.json`` where the migration went (for `ncdma migrate --finish`), written by
`ncdma migrate` beside the request. A migration that leaves the destination paused keeps
them all; `--finish` or a later migration of the domain removes them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ncdma.errors import MigrationRefused
from ncdma.linux.slotmem import preallocate
from ncdma.model.slot import SlotRecord
from ncdma.settings import Settings
from ncdma.store.files import PRIVATE, PRIVATE_DIR, make_directory, read_json_object, write_json

JOURNAL_RESERVE = 16 << 20  # bytes a capture leaves free: the guards' journals live there too
REQUEST_FILE = "capture.json"
RESULT_FILE = "captured.json"
ORIGIN_FILE = "migration.json"


def data_name(slot: SlotRecord) -> str:
    """The file name of a slot's content in the migration directory."""
    return f"slot-{slot.gpa:x}.bin"


def migration_dir(settings: Settings, uuid: str) -> Path:
    """Where one domain's outgoing migration keeps its request and captured slots."""
    return settings.state_dir / "migrations" / uuid


def arm(settings: Settings, uuid: str, slots: Sequence[SlotRecord]) -> Path:
    """Ask the domain's guard to capture ``slots`` when QEMU exits; return the directory.

    The files are allocated now, and only if JOURNAL_RESERVE stays free beside them.

    :raise MigrationRefused: When there is not that much space (nothing is left behind).
    """
    directory = migration_dir(settings, uuid)
    shutil.rmtree(directory, ignore_errors=True)
    make_directory(directory, PRIVATE_DIR)
    needed = sum(slot.size for slot in slots)
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    if needed + JOURNAL_RESERVE > free:
        disarm(settings, uuid)
        raise MigrationRefused(
            f"capturing the tagged slots needs {needed >> 20} MiB in {directory.parent}, which "
            f"has {free >> 20} MiB free, {JOURNAL_RESERVE >> 20} MiB of them kept for the "
            f"guards' journals", "free space there (on tmpfs it is RAM), or use "
            "migration='skip' where the slots' content need not move")
    try:
        for slot in slots:  # allocated now, while the guest runs, not during the downtime
            preallocate(directory / data_name(slot), slot.size)
    except OSError as err:
        disarm(settings, uuid)
        raise MigrationRefused(f"cannot allocate the capture files in {directory}: "
                               f"{err.strerror}", "free space there") from None
    # "slots" in the form a guard of the previous version reads (it may still run a domain
    # started before an upgrade); "records" is what this version's guard reads
    legacy = [{"slot": slot.slot, "gpa": slot.gpa, "size": slot.size, "hva": slot.hva,
               "owner": slot.owner.describe()} for slot in slots]
    write_json(directory / REQUEST_FILE, {"slots": legacy,
                                          "records": [slot.to_json() for slot in slots]},
               PRIVATE, indent=2)
    return directory


def disarm(settings: Settings, uuid: str) -> None:
    """Forget the request and anything captured (the migration failed or is done)."""
    shutil.rmtree(migration_dir(settings, uuid), ignore_errors=True)


def read_request(settings: Settings, uuid: str) -> list[SlotRecord] | None:
    """The slots `ncdma migrate` asked the guard to capture, or None when it asked nothing."""
    request = read_json_object(migration_dir(settings, uuid) / REQUEST_FILE)
    if request is None:
        return None
    try:
        return [SlotRecord.from_json(record) for record in request.get("records", [])]
    except (KeyError, ValueError, TypeError):
        return None


def write_result(settings: Settings, uuid: str, slots: list[dict[str, Any]],
                 error: str | None) -> None:
    """The guard's capture result: each captured slot (with file and sha256), or the error."""
    write_json(migration_dir(settings, uuid) / RESULT_FILE, {"slots": slots, "error": error},
               PRIVATE, indent=2)


def read_captured(settings: Settings, uuid: str) -> dict[str, Any] | None:
    """The guard's capture result, or None when the guard wrote none."""
    return read_json_object(migration_dir(settings, uuid) / RESULT_FILE)


@dataclass(frozen=True)
class KeptMigration:
    """Where a copy migration of domain ``domain`` (``uuid``) went: what `--finish` needs."""

    uuid: str
    domain: str
    desturi: str
    remote_ncdma: str


def remember(settings: Settings, kept: KeptMigration) -> None:
    """Record where the armed migration goes, beside its request."""
    write_json(migration_dir(settings, kept.uuid) / ORIGIN_FILE, asdict(kept), PRIVATE,
               indent=2)


def find_kept(settings: Settings, domain: str) -> KeptMigration | None:
    """The migration kept on this host for ``domain`` (its name or UUID), if any."""
    for path in sorted((settings.state_dir / "migrations").glob(f"*/{ORIGIN_FILE}")):
        record = read_json_object(path)
        try:
            kept = KeptMigration(**record) if record is not None else None
        except TypeError:
            continue  # not a record this version wrote
        if kept is not None and domain in (kept.domain, kept.uuid) \
                and kept.uuid == path.parent.name:
            return kept
    return None
