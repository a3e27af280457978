"""The guard service: a root daemon that takes each wrapper's seccomp listener.

libvirt usually runs QEMU as an unprivileged user with no capabilities, and the pid
libvirt knows must stay QEMU's; reading and rewriting QEMU's ioctl argument needs
ptrace-level access, which a child of that user does not have (Yama). So the wrapper
hands its listener over a unix socket to this service, which runs as root and forks one
keeper per domain with it (:mod:`ncdma.guard.keeper`): the keeper runs the guard, replaces
it when it dies or stalls, and outlives this service (a restart or a crash of the service
leaves every running VM guarded).

Protocol (one exchange per connection): the wrapper sends one JSON line
``{"uuid": ..., "pid": ..., "listener_fd": N}`` with the listener attached (SCM_RIGHTS);
the service answers one JSON line ``{"ok": true, "qmp_socket": PATH}`` or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncdma.guard.keeper import keep
from ncdma.guard.task import GuardTask
from ncdma.logs import configure_logging
from ncdma.settings import Settings
from ncdma.store.state import QMP_SOCKET, read_plan

_MAX_REQUEST = 4096
_MAX_UNIX_PATH = 108  # sun_path, with its terminating NUL


@dataclass
class Attachment:
    """One guarded QEMU: the pid of its keeper process."""

    task: GuardTask
    keeper_pid: int


class GuardService:
    """Accepts listeners from wrappers and forks one keeper per running QEMU."""

    def __init__(self, settings: Settings, log: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        self.attachments: dict[str, Attachment] = {}
        self.lock = threading.Lock()
        self.server: socket.socket | None = None

    def server_close(self) -> None:
        """Close the listening socket (in a forked keeper, which must not hold it)."""
        if self.server is not None:
            self.server.close()

    def attach(self, request: dict[str, Any], listener: int, peer_uid: int) -> dict[str, Any]:
        """Start the guard of one QEMU; the answer for the wrapper."""
        uuid = str(request.get("uuid", ""))
        pid = int(request.get("pid", 0))
        plan = read_plan(self.settings, uuid) if uuid and "/" not in uuid else None
        if plan is None:
            return {"ok": False, "error": f"no plan for domain {uuid!r}: the prepare hook did "
                                          f"not run (is ncdma's libvirt hook installed?)"}
        directory = self.settings.domain_dir(uuid)
        if len(str(directory / QMP_SOCKET)) >= _MAX_UNIX_PATH:
            return {"ok": False, "error": f"state_dir {self.settings.state_dir} is too long for "
                                          f"a unix socket path: shorten it in ncdma.conf"}
        qmp_dir = directory / Path(QMP_SOCKET).parent
        qmp_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(qmp_dir, peer_uid, -1)  # QEMU, running as the wrapper's user, creates it
        task = GuardTask(uuid, pid, plan, listener)
        attachment = Attachment(task, self.fork_keeper(task))
        with self.lock:
            self.attachments[uuid] = attachment
        self.log.info("guardd: %s (QEMU %d) attached, keeper %d", plan.domain, pid,
                      attachment.keeper_pid)
        return {"ok": True, "qmp_socket": str(directory / QMP_SOCKET)}

    def fork_keeper(self, task: GuardTask) -> int:
        """The keeper of ``task``, forked from this warm process (no start-up cost: QEMU
        waits in its first memslot ioctl until the guard answers), in a session of its own."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                self.server_close()
                code = keep(task, self.settings)
            finally:
                os._exit(code)
        return pid

    def reap(self) -> None:
        """Forget the keepers that ended (their QEMU exited)."""
        with self.lock:
            for uuid, attachment in list(self.attachments.items()):
                waited, _ = os.waitpid(attachment.keeper_pid, os.WNOHANG)
                if waited != 0:
                    del self.attachments[uuid]

    def handle_connection(self, connection: socket.socket) -> None:
        """One wrapper's request: read it, answer it, close."""
        with connection:
            connection.settimeout(5)
            try:
                message, fds, _, _ = socket.recv_fds(connection, _MAX_REQUEST, 1)
                peer = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                             struct.calcsize("3i"))
                _, peer_uid, _ = struct.unpack("3i", peer)
                if not fds:
                    answer = {"ok": False, "error": "no listener fd attached"}
                else:
                    try:
                        answer = self.attach(json.loads(message), fds[0], peer_uid)
                    finally:
                        os.close(fds[0])
            except (OSError, ValueError) as err:
                answer = {"ok": False, "error": f"bad request: {err}"}
            if not answer["ok"]:
                self.log.error("guardd: refused: %s", answer["error"])
            try:
                connection.sendall(json.dumps(answer).encode() + b"\n")
            except OSError:
                pass

    def serve(self) -> None:
        """Listen forever (until SIGTERM)."""
        path = self.settings.guard_socket
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        server = self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        os.chmod(path, 0o666)  # QEMU's user connects; the plan check authorizes
        server.listen(64)
        server.settimeout(0.2)
        self.log.info("guardd: listening on %s", path)
        while True:
            try:
                connection, _ = server.accept()
            except TimeoutError:
                self.reap()
                continue
            self.handle_connection(connection)
            self.reap()


def run_service(settings: Settings) -> int:
    """Run the guard service in the foreground."""
    log = configure_logging(settings, "guardd")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    GuardService(settings, log).serve()
    return 0
