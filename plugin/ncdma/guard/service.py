"""The guard service: a root daemon that takes each wrapper's seccomp listener.

libvirt usually runs QEMU as an unprivileged user with no capabilities, and the pid
libvirt knows must stay QEMU's; reading and rewriting QEMU's ioctl argument needs
ptrace-level access, which a child of that user does not have (Yama). So the wrapper
hands its listener over a unix socket to this service, which runs as root and forks one
keeper per domain with it (:mod:`ncdma.guard.keeper`): the keeper runs the guard, replaces
it when it dies or stalls, and outlives this service (a restart or a crash of the service
leaves every running VM guarded).

The exchange is :mod:`ncdma.attach`'s; who gets a guard is :mod:`ncdma.trust`'s. Each
client is served in a thread of its own, under one deadline for its whole exchange, so a
slow or idle client delays no other.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from ncdma.errors import AttachRequestError, SeccompError, StateFileError
from ncdma.guard.attach import (ACK, ATTACH_TIMEOUT_S, MAX_REQUEST, SERVICE_MARGIN_S, answer_bytes,
                               parse_request, refusal)
from ncdma.guard.keeper import keep
from ncdma.guard.task import GuardTask
from ncdma.guard.trust import refusal_reason
from ncdma.linux.peercred import Caller, caller_of, command_line, is_seccomp_listener
from ncdma.linux.pidfd import alive, pidfd_getfd
from ncdma.linux.sdnotify import notify_ready
from ncdma.logs import configure_logging
from ncdma.model.plan import Plan
from ncdma.settings import Settings
from ncdma.store.files import open_private_dir
from ncdma.store.state import QMP_SOCKET, read_plan

_MAX_UNIX_PATH = 108  # sun_path, with its terminating NUL
_MAX_CLIENTS = 32
_REAP_PERIOD_S = 0.2


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
        self.attaching: set[str] = set()
        self.lock = threading.RLock()
        self.server: socket.socket | None = None
        self.clients = threading.BoundedSemaphore(_MAX_CLIENTS)
        self.in_flight: set[int] = set()  # clients' fds, which no guard must inherit

    def server_close(self) -> None:
        """In a forked keeper: close the listening socket, which it must not hold."""
        if self.server is not None:
            self.server.close()

    def fork_keeper(self, task: GuardTask) -> int:
        """The keeper of ``task``, forked from this warm process (no start-up cost: QEMU
        waits in its first memslot ioctl until the guard answers), in a session of its own.
        The child holds nothing another thread had half done (the service's lock and
        logging's are taken around the fork) and closes the other clients' descriptors."""
        handlers = self.log.handlers
        pid = -1
        with self.lock:
            others = self.in_flight - {task.listener, task.pidfd}
            for handler in handlers:  # no client thread is halfway through a log write
                handler.acquire()
            try:
                pid = os.fork()
            finally:
                if pid != 0:
                    for handler in handlers:
                        handler.release()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                self.server_close()
                for fd in others:
                    os.close(fd)
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

    def _is_attached(self, uuid: str) -> bool:
        """A guard serves a live QEMU of ``uuid``, or another client is attaching it."""
        attachment = self.attachments.get(uuid)
        return uuid in self.attaching or (
            attachment is not None and alive(attachment.task.qemu_pid))

    def _prepare_qmp_dir(self, plan: Plan) -> None:
        """qmp/ in the domain's root-owned directory, owned by QEMU's user (QEMU creates its
        socket there), changed only through descriptors: no path QEMU's user could swap."""
        with open_private_dir(self.settings.domain_dir(plan.uuid)) as domain_fd:
            try:
                os.mkdir(os.path.dirname(QMP_SOCKET), 0o700, dir_fd=domain_fd)
            except FileExistsError:
                pass
            qmp_fd = os.open(os.path.dirname(QMP_SOCKET),
                             os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=domain_fd)
            try:
                os.fchown(qmp_fd, plan.qemu_uid, plan.qemu_gid)
                os.fchmod(qmp_fd, 0o700)
            finally:
                os.close(qmp_fd)

    def decide(self, message: bytes, fds: list[int], truncated: bool, caller: Caller,
               owned: list[int]) -> tuple[dict[str, Any], GuardTask | None, Plan | None]:
        """The answer to one request; with the guard to start when it is an ok.

        The listener the guard gets is the caller's own fd ``listener_fd``, taken from it
        (pidfd_getfd): whatever was sent, the caller holds what the guard serves."""
        try:
            request = parse_request(message)
        except AttachRequestError as err:
            return refusal(f"bad request: {err}"), None, None
        if truncated or len(fds) != 1 or not is_seccomp_listener(fds[0]):
            return refusal("the request must carry exactly one fd: the seccomp listener"), \
                None, None
        try:
            plan = read_plan(self.settings, request.uuid)
        except StateFileError as err:
            return refusal(str(err)), None, None
        with self.lock:
            reason = refusal_reason(request, caller, plan, command_line(caller.pid),
                                    self._is_attached(request.uuid))
            listener = self._take_listener(caller, request.listener_fd, owned) \
                if reason is None else None
            if reason is None and listener is None:
                reason = f"pid {caller.pid} holds no seccomp listener as fd {request.listener_fd}"
            if reason is not None or plan is None or listener is None:
                return refusal(reason or "no plan"), None, None
            self.attaching.add(request.uuid)
        directory = self.settings.domain_dir(request.uuid)
        if len(str(directory / QMP_SOCKET)) >= _MAX_UNIX_PATH:
            return refusal(f"state_dir {self.settings.state_dir} is too long for a unix socket "
                           f"path: shorten it in ncdma.conf"), None, plan
        try:
            self._prepare_qmp_dir(plan)
        except OSError as err:
            return refusal(f"cannot prepare {directory}: {err}"), None, plan
        task = GuardTask(request.uuid, caller.pid, plan, listener, pidfd=caller.pidfd)
        return {"ok": True, "qmp_socket": str(directory / QMP_SOCKET),
                "timeout_s": ATTACH_TIMEOUT_S}, task, plan

    def _take_listener(self, caller: Caller, number: int, owned: list[int]) -> int | None:
        """Our copy of the caller's fd ``number`` if it is a seccomp listener (lock held)."""
        try:
            listener = pidfd_getfd(caller.pidfd, number)
        except SeccompError:
            return None
        owned.append(listener)
        self.in_flight.add(listener)
        return listener if is_seccomp_listener(listener) else None

    def handle_connection(self, connection: socket.socket) -> None:
        """One wrapper's exchange, within its deadline; never raises."""
        deadline = time.monotonic() + ATTACH_TIMEOUT_S - SERVICE_MARGIN_S
        owned: list[int] = [connection.fileno()]
        reserved: list[str] = []  # the domain this client is attaching, if any
        try:
            caller = caller_of(connection)
            owned.append(caller.pidfd)
            with self.lock:
                self.in_flight.update(owned)
            self._exchange(connection, caller, deadline, owned, reserved)
        except Exception as err:  # noqa: BLE001 - one client's failure never ends the service
            self.log.error("guardd: a client's exchange failed: %r", err)
        finally:
            with self.lock:
                self.in_flight.difference_update(owned)
                self.attaching.difference_update(reserved)
            connection.close()
            for fd in owned[1:]:
                _close(fd)

    def _exchange(self, connection: socket.socket, caller: Caller, deadline: float,
                  owned: list[int], reserved: list[str]) -> None:
        connection.settimeout(_remaining(deadline))
        try:
            message, fds, flags, _ = socket.recv_fds(connection, MAX_REQUEST, 1)
        except (OSError, ValueError) as err:
            self.log.error("guardd: no request from pid %d: %s", caller.pid, err)
            return
        owned.extend(fds)
        with self.lock:
            self.in_flight.update(fds)
        answer, task, plan = self.decide(message, fds, bool(flags & socket.MSG_CTRUNC), caller,
                                         owned)
        if plan is not None:
            reserved.append(plan.uuid)
        if not answer["ok"]:
            self.log.error("guardd: refused pid %d (uid %d): %s", caller.pid, caller.uid,
                           answer["error"])
        connection.settimeout(_remaining(deadline))
        connection.sendall(answer_bytes(answer))
        if task is None or plan is None:
            return
        if connection.recv(len(ACK)) != ACK:
            self.log.error("guardd: %s (QEMU %d): the wrapper gave up before its guard "
                           "started; none started", plan.domain, caller.pid)
            return
        keeper_pid = self.fork_keeper(task)  # it holds the listener and the pidfd now
        with self.lock:
            self.attachments[plan.uuid] = Attachment(task, keeper_pid)
        self.log.info("guardd: %s (QEMU %d) attached, keeper %d", plan.domain, caller.pid,
                      keeper_pid)

    def _client(self, connection: socket.socket) -> None:
        try:
            self.handle_connection(connection)
        finally:
            self.clients.release()

    def _accept(self, server: socket.socket) -> None:
        connection, _ = server.accept()
        if not self.clients.acquire(blocking=False):
            self.log.error("guardd: %d clients at once: refusing one", _MAX_CLIENTS)
            connection.close()
            return
        threading.Thread(target=self._client, args=(connection,), daemon=True).start()

    def serve(self) -> None:
        """Listen forever (until SIGTERM)."""
        path = self.settings.guard_socket
        with open_private_dir(path.parent, mode=0o755, create=True) as directory:
            try:
                os.unlink(path.name, dir_fd=directory)
            except FileNotFoundError:
                pass
            server = self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            umask = os.umask(0o177)
            try:
                server.bind(str(path))
            finally:
                os.umask(umask)
            # only root and QEMU's group may connect: the trust checks decide the rest
            os.chown(path.name, 0, self.settings.qemu_group_id(), dir_fd=directory,
                     follow_symlinks=False)
            os.chmod(path.name, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP,
                     dir_fd=directory, follow_symlinks=False)
        server.listen(128)
        server.setblocking(False)
        self.log.info("guardd: listening on %s", path)
        try:
            if notify_ready(os.environ):  # Type=notify: started only now that it listens
                self.log.info("guardd: told systemd it is ready")
        except OSError as err:
            self.log.error("guardd: cannot tell systemd it is ready: %s", err)
        while True:
            if select.select([server], [], [], _REAP_PERIOD_S)[0]:
                try:
                    self._accept(server)
                except (OSError, RuntimeError) as err:  # no connection, or no thread for it
                    self.log.error("guardd: accept failed: %s", err)
            self.reap()


def _remaining(deadline: float) -> float:
    return max(0.001, deadline - time.monotonic())


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def run_service(settings: Settings) -> int:
    """Run the guard service in the foreground."""
    log = configure_logging(settings, "guardd")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    GuardService(settings, log).serve()
    return 0
