"""The guard service under a Type=notify unit (issue 18): `ncdma guardd` sends READY=1 to
$NOTIFY_SOCKET (a path or the abstract namespace) only once guard.sock listens, and the
guards it forks later do not inherit the variable."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from lab.guarded import GuardedHost
from ncdma.cli.metrics import listening
from ncdma.linux.sdnotify import notify_ready


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_guardd_says_ready_once_it_listens(short_tmp: Path, abstract: bool) -> None:
    name = f"@ncdma-test-{os.getpid()}" if abstract else str(short_tmp / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name[1:] if abstract else name)
    receiver.settimeout(20)
    guarded = GuardedHost(short_tmp)
    guarded.start_service(NOTIFY_SOCKET=name)
    try:
        message = receiver.recv(4096)
        assert message == b"READY=1"
        assert listening(guarded.settings.guard_socket)
    finally:
        guarded.stop_service()
        receiver.close()


def test_without_notify_socket_guardd_says_nothing(short_tmp: Path) -> None:
    guarded = GuardedHost(short_tmp)
    guarded.start_service()
    try:
        assert listening(guarded.settings.guard_socket)
    finally:
        guarded.stop_service()
    assert "told systemd" not in (short_tmp / "ncdma.log").read_text()


def test_the_variable_is_taken_out_for_the_processes_forked_later(short_tmp: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(short_tmp / "notify"))
    environ = {"NOTIFY_SOCKET": str(short_tmp / "notify"), "PATH": "/bin"}
    assert notify_ready(environ) and environ == {"PATH": "/bin"}
    assert receiver.recv(64) == b"READY=1"
    assert not notify_ready(environ)  # nothing to tell any more
