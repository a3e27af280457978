"""Per-domain AppArmor rules: each QEMU reaches its own part of ncdma's state, no other's.

libvirt confines each QEMU with a profile of its own, ``/etc/apparmor.d/libvirt/
libvirt-UUID``, made once from ``TEMPLATE.qemu``; it includes ``libvirt-UUID.files``,
which virt-aa-helper rewrites for the domain at every start, before the hook's ``start``
runs. At ``start`` ncdma adds its rules for that one domain to that file, between markers,
and reloads the profile before QEMU runs: the domain's QEMU may read its own
``wrapper.json`` and serve its own ``qmp/qmp.sock``. The abstraction every QEMU shares
(libvirt-qemu, extended by ncdma's Ansible role) grants only what every VM needs: the
wrapper's Python, ncdma's settings and the guard service's socket.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ncdma.errors import ConfinementError
from ncdma.settings import Settings

PROFILES = Path("/etc/apparmor.d/libvirt")
ENABLED = Path("/sys/module/apparmor/parameters/enabled")
LOAD = ("apparmor_parser", "--replace")
_BEGIN = "# BEGIN ncdma: this domain's own state only"
_END = "# END ncdma"
_TIMEOUT_S = 30.0


def enforced(enabled: Path = ENABLED) -> bool:
    """The kernel runs AppArmor."""
    try:
        return enabled.read_text().strip() == "Y"
    except OSError:
        return False


def domain_rules(settings: Settings, uuid: str) -> str:
    """The rules of domain ``uuid``'s profile, between ncdma's markers."""
    directory = settings.domain_dir(uuid)
    return (f"  {_BEGIN}\n"
            f"  \"{directory}/wrapper.json\" r,\n"
            f"  \"{directory}/qmp/\" r,\n"
            f"  \"{directory}/qmp/qmp.sock\" rw,\n"
            f"  \"{directory}/qmp/guest-pat.json\" w,\n"
            f"  {_END}\n")


def with_domain_rules(text: str, rules: str) -> str:
    """``text`` (a profile's files) with ncdma's block replaced by, or added as, ``rules``."""
    start, end = text.find(f"  {_BEGIN}\n"), text.find(f"  {_END}\n")
    if start >= 0 and end > start:
        return text[:start] + rules + text[end + len(f"  {_END}\n"):]
    return text + ("" if text.endswith("\n") or not text else "\n") + rules


def confine_domain(settings: Settings, uuid: str, profiles: Path = PROFILES,
                   load: Sequence[str] = LOAD) -> Path | None:
    """Add domain ``uuid``'s rules to its libvirt profile and reload it; the profile's
    path, or None when libvirt made none (no AppArmor security driver).

    :raise ConfinementError: When the rules cannot be written or the profile loaded.
    """
    files, profile = profiles / f"libvirt-{uuid}.files", profiles / f"libvirt-{uuid}"
    if not files.exists() or not profile.exists():
        return None
    temporary = files.with_name(f".{files.name}.ncdma")
    try:
        temporary.write_text(with_domain_rules(files.read_text(), domain_rules(settings, uuid)))
        os.chmod(temporary, 0o644)
        os.replace(temporary, files)
        done = subprocess.run([*load, str(profile)], capture_output=True, text=True,
                              timeout=_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfinementError(f"cannot add ncdma's rules to {files}: {err}",
                               "check /etc/apparmor.d/libvirt and apparmor_parser",
                               profile) from None
    if done.returncode != 0:
        error = done.stderr.strip().splitlines()
        raise ConfinementError(f"{load[0]} refused {profile}: "
                               f"{error[-1] if error else done.returncode}",
                               "check the profile with apparmor_parser -Q -K", profile)
    return profile
