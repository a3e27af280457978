"""The user and group libvirt runs a domain's QEMU as, by number.

libvirt puts the domain's DAC label (``+UID:+GID`` or ``user:group``) into the XML the
prepare hook gets; without one, QEMU runs as qemu.conf's ``user`` and ``group``, and
without those as the user libvirt was built with (Debian: libvirt-qemu).
"""

from __future__ import annotations

import grp
import pwd
import re
from pathlib import Path

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
BUILT_IN = ("libvirt-qemu", "libvirt-qemu")


def _number(value: str, database: str) -> int | None:
    value = value.strip()
    if re.fullmatch(r"\+?[0-9]+", value):
        return int(value.lstrip("+"))
    try:
        return pwd.getpwnam(value).pw_uid if database == "user" else grp.getgrnam(value).gr_gid
    except KeyError:
        return None


def _configured(text: str, key: str) -> str | None:
    found = re.search(rf'^\s*{key}\s*=\s*"([^"]*)"', text, re.MULTILINE)
    return found.group(1) if found else None


def qemu_ids(dac_label: str | None, qemu_conf: Path = QEMU_CONF) -> tuple[int, int] | None:
    """QEMU's (uid, gid) for a domain with ``dac_label``; None when they do not resolve."""
    if dac_label and ":" in dac_label:
        user, group = dac_label.split(":", 1)
    else:
        try:
            text = qemu_conf.read_text()
        except OSError:
            text = ""
        user = _configured(text, "user") or BUILT_IN[0]
        group = _configured(text, "group") or BUILT_IN[1]
    uid, gid = _number(user, "user"), _number(group, "group")
    return None if uid is None or gid is None else (uid, gid)
