"""The guard's side of a capture: read the requested slots while QEMU waits in exit_group.

The request and result files, and why the content is read at exit: :mod:`ncdma.store.capture`.
The capture has a deadline inside libvirt's grace period (libvirt sends SIGTERM and waits
10 s before SIGKILL): slots not read by then are not read, the result says the migration
was not copied, and QEMU exits. When no guard can run (the keeper answers alone), nothing is
read at all: the keeper, which nothing watches, never waits on QEMU's memory, so QEMU exits
at once and the result says why the migration was not copied (:func:`not_captured`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ncdma.errors import SlotMemoryError
from ncdma.guard.faults import Faults
from ncdma.linux.slotmem import capture
from ncdma.settings import Settings
from ncdma.store.capture import data_name, migration_dir, read_request, write_result

CAPTURE_DEADLINE_S = 8.0  # from the trapped exit_group; libvirt's SIGTERM grace is 10 s


def capture_at_exit(settings: Settings, uuid: str, qemu_pid: int, log: logging.Logger,
                    deadline: float, faults: Faults | None = None) -> None:
    """QEMU waits in exit_group; read every requested slot before ``deadline`` (monotonic).
    Never raises. ``faults``: a test's ``capture:slow`` point (off unless armed)."""
    requested = read_request(settings, uuid)
    if requested is None:
        return  # no migration asked for a copy: QEMU just exits
    directory = migration_dir(settings, uuid)
    slots: list[dict[str, Any]] = []
    error = None
    for slot in requested:
        if faults is not None:
            faults.slow("capture:slow", deadline + 0.1)
        if time.monotonic() > deadline:
            error = (f"the capture's deadline ({CAPTURE_DEADLINE_S:.0f} s after QEMU's exit "
                     f"began) passed after {len(slots)} of {len(requested)} slots: not copied")
            log.error("capture %s: %s", uuid, error)
            break
        began = time.perf_counter()
        try:
            transfer = capture(qemu_pid, slot.hva, slot.size, directory / data_name(slot))
        except (SlotMemoryError, OSError) as err:
            error = f"slot {slot.slot:#x} at {slot.gpa:#x}: {err}"
            log.error("capture %s: %s", uuid, error)
            break
        slots.append({**slot.to_json(), "file": data_name(slot), "sha256": transfer.sha256,
                      "seconds": transfer.seconds,
                      "held_seconds": time.perf_counter() - began})
        log.info("capture %s: slot %#x %#x bytes in %.1f ms, sha256 %s", uuid, slot.slot,
                 slot.size, transfer.seconds * 1e3, transfer.sha256[:16])
    write_result(settings, uuid, slots, error)


def not_captured(settings: Settings, uuid: str, log: logging.Logger, reason: str) -> None:
    """QEMU waits in exit_group and no guard can capture: if a migration asked for a copy,
    record that it was not copied and why (nothing is read). Never raises."""
    try:
        if read_request(settings, uuid) is None:
            return
        error = f"{reason}: not copied"
        log.error("capture %s: %s", uuid, error)
        write_result(settings, uuid, [], error)
    except OSError as err:
        log.error("capture %s: the result not written: %s", uuid, err.strerror)
