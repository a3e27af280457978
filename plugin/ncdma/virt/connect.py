"""Connections to libvirt, with libvirt's own error printer silenced.

libvirt errors become :class:`ncdma.errors.LibvirtError` with libvirt's message and a
hint chosen by error code, never by text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import libvirt

from ncdma.errors import LibvirtError

_HINTS = {
    libvirt.VIR_ERR_NO_DOMAIN: "list the domains with `virsh list --all`",
    libvirt.VIR_ERR_NO_CONNECT: "is libvirtd (or virtqemud) running? check --connect",
    libvirt.VIR_ERR_SYSTEM_ERROR: "is libvirtd (or virtqemud) running? check --connect",
    libvirt.VIR_ERR_AUTH_FAILED: "run as root or as a member of the libvirt group",
    libvirt.VIR_ERR_OPERATION_INVALID: "check the domain's state with `virsh dominfo`",
}


def _ignore(_context: Any, _error: Any) -> None:
    """libvirt's default handler prints every error to stderr; ncdma prints its own line."""


def libvirt_error(err: libvirt.libvirtError, doing: str) -> LibvirtError:
    """An operator-facing error for a failed libvirt call."""
    hint = _HINTS.get(err.get_error_code(), "see libvirtd's log")
    return LibvirtError(f"{doing}: {err.get_error_message()}", hint, err.get_error_code())


@contextmanager
def connection(uri: str | None) -> Iterator[libvirt.virConnect]:
    """An open read-write connection to ``uri`` (None: libvirt's default), closed on exit.

    :raise LibvirtError: When libvirt cannot be reached.
    """
    libvirt.registerErrorHandler(_ignore, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"cannot connect to {uri or 'libvirt'}") from None
    try:
        yield conn
    finally:
        conn.close()
