"""systemd's readiness protocol (sd_notify(3)), without libsystemd: one datagram to the
socket in $NOTIFY_SOCKET. Under a unit with Type=notify, systemd considers the service
started only then; elsewhere (no $NOTIFY_SOCKET) nothing happens."""

from __future__ import annotations

import socket
from collections.abc import MutableMapping


def notify_ready(environ: MutableMapping[str, str]) -> bool:
    """Tell systemd the service is ready; True when there was a socket to tell.

    The variable is removed from ``environ`` (as sd_notify's unset_environment does): the
    processes the service forks later (the guards) must not speak for it.

    :raise OSError: When the socket named by $NOTIFY_SOCKET cannot be written.
    """
    path = environ.pop("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # @: the abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as channel:
        channel.sendto(b"READY=1", address)
    return True
