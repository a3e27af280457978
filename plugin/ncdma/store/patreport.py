"""Method vm: what QEMU's preload library said about guest PAT (``qmp/guest-pat.json``).

The library (preload/ncdma-pat.c) runs inside QEMU, as QEMU's user, and writes one JSON
line right after KVM_CREATE_VM: whether KVM_X86_QUIRK_IGNORE_GUEST_PAT was disabled on the
VM fd, the quirks2 mask, the errno and why. QEMU's user owns ``qmp/``, so the file is QEMU's
own claim (ncdma is no boundary against a compromised QEMU, DESIGN.md section 5); it is
read without following anything QEMU's user could swap in (no symlink, no FIFO, bounded).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ncdma.store.state import PAT_REPORT

_MAX_REPORT = 4096
_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class GuestPat:
    """The VM-level state of method vm: guest PAT honored for the whole VM, or why not."""

    honored: bool
    reason: str
    quirks2_mask: int = -1
    errno: int = 0

    def to_json(self) -> dict[str, Any]:
        """As journaled."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuestPat:
        """From the journal or the library's report.

        :raise ValueError: When a field is missing or of the wrong type.
        """
        honored, reason = data.get("honored"), data.get("reason")
        mask, error = data.get("quirks2_mask", -1), data.get("errno", 0)
        if type(honored) is not bool or not isinstance(reason, str) \
                or type(mask) is not int or type(error) is not int:
            raise ValueError("honored (bool), reason (text), quirks2_mask and errno (ints)")
        return cls(honored, reason[:400], mask, error)


NOT_REPORTED = GuestPat(False, "ncdma's preload library made no report before QEMU's first "
                               "memslot ioctl: it did not run in QEMU (missing, or LD_PRELOAD "
                               "dropped), so KVM_X86_QUIRK_IGNORE_GUEST_PAT stays enabled")


def _read_bounded(directory: Path) -> bytes | None:
    """The report's bytes, opened through the domain's directory without following links;
    None when it is not there (or not a regular file)."""
    try:
        domain = os.open(directory, _NO_FOLLOW | os.O_DIRECTORY)
    except OSError:
        return None
    descriptors = [domain]
    try:
        parent, name = os.path.split(PAT_REPORT)
        descriptors.append(os.open(parent, _NO_FOLLOW | os.O_DIRECTORY, dir_fd=domain))
        descriptors.append(os.open(name, _NO_FOLLOW | os.O_NONBLOCK, dir_fd=descriptors[1]))
        if not stat.S_ISREG(os.fstat(descriptors[2]).st_mode):
            return None
        return os.read(descriptors[2], _MAX_REPORT)
    except OSError:
        return None
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def read_pat_report(directory: Path, qemu_pid: int) -> GuestPat | None:
    """The preload library's report in domain directory ``directory``, made by QEMU
    ``qemu_pid``; None when there is none yet. A report that cannot be parsed, or one another
    process wrote (a QEMU of an earlier start), is a "not honored" state that says so."""
    data = _read_bounded(directory)
    if data is None:
        return None
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        state = GuestPat.from_json(document)
    except (ValueError, RecursionError):
        return GuestPat(False, f"the preload library's report {PAT_REPORT} cannot be read: "
                               f"{data[:80]!r}")
    if document.get("pid") != qemu_pid:
        return GuestPat(False, f"the preload library's report {PAT_REPORT} was written by pid "
                               f"{str(document.get('pid'))[:20]}, not by QEMU {qemu_pid}: a "
                               f"stale report, and this QEMU made none")
    return state
