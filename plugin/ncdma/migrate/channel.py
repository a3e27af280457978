"""SSH to the destination's ``ncdma peer``: the channel operators already trust for virsh.

The SSH target comes from the destination URI, as virsh's qemu+ssh transport does:
``qemu+ssh://[user@]host[:port]/system?keyfile=PATH``. Other transports (qemu+tcp,
qemu+tls) name the host too; SSH then goes to that host as root on port 22.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ncdma.errors import PeerError, UsageError

_TIMEOUT_S = 60.0
# OpenSSH's default ciphers, AES-GCM first: with AES-NI it carries slots ~1.5x faster
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_TOKEN = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach the destination host."""

    host: str
    user: str | None = None
    port: int | None = None
    keyfile: str | None = None

    @classmethod
    def from_uri(cls, uri: str) -> SshTarget:
        """The SSH target a libvirt URI names, validated: a user and host that can only be
        a user and a host (never an ssh option), a port in range, an absolute key file.

        :raise UsageError: When the URI names no remote host, or anything invalid.
        """
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as err:
            raise UsageError(f"the destination URI {uri!r} is invalid: {err}",
                             "give a URI such as qemu+ssh://user@host2:22/system") from None
        if not parts.hostname:
            raise UsageError(f"the destination URI {uri!r} names no host",
                             "give a remote URI such as qemu+ssh://host2/system")
        host = unquote(parts.hostname)
        user = unquote(parts.username) if parts.username is not None else None
        if not _valid_host(host):
            raise UsageError(f"the destination URI {uri!r} names an invalid host {host!r}",
                             "give a host name, an IPv4 address or an IPv6 one in brackets")
        if user is not None and not _USER.fullmatch(user):
            raise UsageError(f"the destination URI {uri!r} names an invalid user {user!r}",
                             "a user name starts with a letter, digit or _ and has only "
                             "letters, digits, '.', '_' and '-'")
        if port == 0:
            raise UsageError(f"the destination URI {uri!r} names port 0", "give a port 1-65535")
        ssh = parts.scheme.endswith("+ssh")
        keyfile = parse_qs(parts.query).get("keyfile", [None])[0]
        if keyfile is not None and not keyfile.startswith("/"):
            raise UsageError(f"the destination URI's keyfile {keyfile!r} is not an absolute "
                             f"path", "give keyfile=/path/to/key")
        return cls(host, user, port if ssh else None, keyfile)

    @property
    def destination(self) -> str:
        """ssh's destination argument (given after ``--``, so never read as an option)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def options(self, control: Path | None) -> list[str]:
        """ssh's options: no prompts, a bounded wait, the shared connection if any."""
        argv = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-c", CIPHERS]
        if control is not None:
            argv += ["-o", f"ControlPath={control}"]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.keyfile:
            argv += ["-i", self.keyfile]
        return argv


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST.fullmatch(host))
    return True


class Peer:
    """The destination's ``ncdma peer`` commands, over one shared SSH connection.

    The first command opens an ssh master connection (ControlMaster=auto) that the
    others reuse: one handshake per migration, not one per command. :meth:`close` ends it.
    """

    def __init__(self, target: SshTarget, ncdma: str, control_dir: Path) -> None:
        self.target = target
        self.ncdma = ncdma
        self.control = control_dir / f"ssh-{os.getpid()}"
        self.lock_holder: subprocess.Popen[bytes] | None = None
        self.receiver: subprocess.Popen[bytes] | None = None

    def _ssh(self, *extra: str) -> list[str]:
        self.control.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return ["ssh", "-o", "ControlMaster=auto", "-o", "ControlPersist=120", *extra,
                *self.target.options(self.control), "--", self.target.destination]

    def command(self, arguments: list[str]) -> list[str]:
        """The ssh command line that runs ``ncdma ARGUMENTS`` on the destination."""
        return [*self._ssh(), self.ncdma, *arguments]

    def lock(self, uuid: str) -> None:
        """Hold the domain's migration lock on the destination (``ncdma peer lock``) until
        :meth:`close`.

        :raise PeerError: When another `ncdma migrate` holds it there, or ssh fails.
        """
        holder = subprocess.Popen(self.command(["peer", "lock", uuid]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        assert holder.stdout is not None and holder.stderr is not None
        if holder.stdout.readline():
            self.lock_holder = holder
            return
        error = holder.stderr.read().decode(errors="replace").strip().splitlines()
        holder.wait(_TIMEOUT_S)
        raise PeerError(f"{self.target.host}: {error[-1] if error else 'ncdma peer lock failed'}",
                        "", self.target.host, "peer lock", holder.returncode)

    def start_receive(self, uuid: str) -> None:
        """Start the destination's ``ncdma peer receive`` now, before libvirt's migration:
        SSH and its interpreter's start-up are then done when the slots are ready, out of
        the downtime. It waits for the stream; :meth:`receive` sends it, :meth:`close`
        ends it (no stream: it writes nothing)."""
        # its own session: a terminal's Ctrl-C after the switchover must not end the copy
        self.receiver = subprocess.Popen(self.command(["peer", "receive", uuid]),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)

    def close(self) -> None:
        """Release the destination's lock, end a receiver that got no stream and the shared
        connection, if opened."""
        if self.receiver is not None:
            try:
                self.receiver.communicate(b"", timeout=_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.receiver.kill()
                self.receiver.wait()
            self.receiver = None
        if self.lock_holder is not None:
            assert self.lock_holder.stdin is not None
            self.lock_holder.stdin.close()
            try:
                self.lock_holder.wait(_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.lock_holder.kill()
            self.lock_holder = None
        if self.control.exists():
            subprocess.run(self._ssh("-O", "exit"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=_TIMEOUT_S, check=False)

    def _run(self, arguments: list[str], data: bytes | None = None,
             answers_on_failure: bool = False,
             started: subprocess.Popen[bytes] | None = None) -> dict[str, Any]:
        """Run ``ncdma ARGUMENTS`` there (or feed ``data`` to the ``started`` one) and read
        its JSON answer."""
        host, command = self.target.host, arguments[0]
        try:
            if started is not None:
                stdout, stderr = started.communicate(data or b"", timeout=_TIMEOUT_S)
                done = subprocess.CompletedProcess(started.args, started.returncode, stdout,
                                                   stderr)
            else:
                done = subprocess.run(self.command(arguments), input=data, capture_output=True,
                                      timeout=_TIMEOUT_S, check=False,
                                      stdin=None if data is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            if started is not None:
                started.kill()
                started.wait()
            raise PeerError(f"{self.target.host}: `ncdma {arguments[0]}` gave no answer in "
                            f"{_TIMEOUT_S:.0f} s", "check the host and its ncdma log", host,
                            command) from None
        except OSError as err:
            raise PeerError(f"cannot run ssh: {err.strerror}", "install openssh-client", host,
                            command) from None
        error = done.stderr.decode(errors="replace").strip().splitlines()
        if done.returncode == 255:
            raise PeerError(f"cannot reach {self.target.host} over SSH: "
                            f"{error[-1] if error else 'ssh failed'}",
                            "set up key-based root SSH to it, as qemu+ssh needs", host,
                            command, done.returncode)
        if done.returncode == 127:
            raise PeerError(f"ncdma is not installed on {self.target.host} ({self.ncdma})",
                            "install it there (scripts/install-host or the Ansible role)",
                            host, command, done.returncode)
        if done.returncode != 0 and not (answers_on_failure and done.returncode == 1):
            raise PeerError(f"{self.target.host}: {error[-1] if error else 'ncdma failed'}",
                            host=host, command=command, peer_exit_status=done.returncode)
        try:
            answer = dict(json.loads(done.stdout))
        except ValueError:
            raise PeerError(f"{self.target.host}: unreadable answer from `ncdma "
                            f"{arguments[0]}`", "is the same ncdma version installed "
                            "there?", host, command, done.returncode) from None
        failure = answer.get("error")
        if isinstance(failure, dict):  # a --json failure: {"error": {message, hint, ...}}
            raise PeerError(f"{self.target.host}: {failure.get('message')}",
                            str(failure.get("hint", "")), host, command, done.returncode)
        return answer

    def preflight(self) -> dict[str, Any]:
        """The destination's ``ncdma peer preflight``."""
        return self._run(["peer", "preflight"])

    def status(self, uuid: str) -> dict[str, Any]:
        """The destination's ``ncdma status --json`` of the domain (healthy or not)."""
        return self._run(["status", uuid, "--json"], answers_on_failure=True)

    def resume(self, uuid: str) -> dict[str, Any]:
        """Resume the paused incoming domain there (``ncdma peer resume``): --p2p and
        --direct never open the destination's libvirt from here."""
        return self._run(["peer", "resume", uuid])

    def receive(self, uuid: str, stream: bytes) -> dict[str, Any]:
        """Send the captured slots to the destination's ``ncdma peer receive`` (the one
        :meth:`start_receive` started, if any); the answer holds the checksums and the
        domain's status there (as `ncdma status --json`)."""
        started, self.receiver = self.receiver, None
        return self._run(["peer", "receive", uuid], stream, started=started)

    def ticket(self, uuid: str) -> str:
        """A one-time ticket from the destination's ``ncdma peer ticket`` for domain
        ``uuid``: its ``migrate`` hook accepts the domain only with it.

        :raise PeerError: When the destination gives none.
        """
        token = self._run(["peer", "ticket", uuid]).get("ticket")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise PeerError(f"{self.target.host}: `ncdma peer ticket` gave no ticket",
                            "is the same ncdma version installed there?", self.target.host,
                            "peer ticket")
        return token
