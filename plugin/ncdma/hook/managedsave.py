"""A managed save's start, held to the restore rule (see :mod:`ncdma.model.incoming`).

libvirt 11.3 runs no ``restore`` hook when it starts a domain from its managed save image
(seen on the lab, whatever libvirt's documentation says); the ``prepare`` hook runs, and
the image libvirt restores from is there until the restore succeeds.
"""

from __future__ import annotations

from pathlib import Path

from ncdma.model.domain import Domain
from ncdma.model.incoming import restore_refusal

#: Where libvirt's QEMU driver keeps managed save images (``NAME.save``; not configurable).
MANAGED_SAVE_DIR = Path("/var/lib/libvirt/qemu/save")


def managed_save_refusal(domain: Domain, save_dir: Path = MANAGED_SAVE_DIR) -> str | None:
    """At ``prepare``: the one line refusing the start of ``domain`` when libvirt is about to
    restore it from its managed save image (libvirt 11.3 runs no ``restore`` hook for that),
    and the restore rule refuses it; None otherwise. The image is only looked at, never
    opened (``virsh start --force-boot`` removes it before ``prepare``)."""
    assert domain.policy is not None
    if not (save_dir / f"{domain.name}.save").exists():
        return None
    return restore_refusal(domain.name, domain.policy)
