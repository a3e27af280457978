"""The one exception tree of ncdma: every class ncdma raises lives here.

Every error an operator can meet is a subclass of :class:`NcdmaError` and carries a
message that names the problem, a hint that says what to do next, and the data a program
needs to tell cases apart (never read out of the message)::

    NcdmaError                    message, hint; exit status 1
     +-- UsageError               a command-line argument is invalid (exit 2)
     |    +-- ConfigError         /etc/ncdma/ncdma.conf is unreadable or bad: path (exit 2)
     +-- NotRootError             the command needs root and runs as another user
     +-- KvmError                 /dev/kvm or a KVM ioctl failed: errno
     +-- SeccompError             a seccomp or pidfd call failed: call, errno
     +-- SlotMemoryError          a slot's memory cannot be mapped, read or written: pid, hva
     +-- DomainXmlError           a domain's XML cannot be parsed or lacks a part
     |    +-- PolicyError         the <ncdma:ncdma> metadata is invalid: attribute
     +-- DomainStateError         a domain is not in the state the command needs: domain
     +-- StateFileError           a file of the state directory is unreadable: path
     +-- LibvirtError             a libvirt call failed: code (libvirt's error code)
     +-- QmpError                 QMP to QEMU failed: command, error_class (QEMU's)
     +-- GuardAttachError         the wrapper could not hand QEMU to the guard: socket,
     |                            filtered (the filter is installed: QEMU cannot run)
     +-- AttachRequestError       a request to the guard service breaks its protocol
     +-- PreloadError             method vm's preload library is missing or unreadable: path
     +-- ConfinementError         a domain's AppArmor rules cannot be written or loaded: profile
     +-- HookTimeout              a hook operation ran past hook_timeout: operation, seconds
     +-- MigrationError           `ncdma migrate`; the source keeps running unless it says
          +-- MigrationRefused    the preflight refused: nothing was changed
          +-- MigrationFailed     libvirt's job or a later phase failed
          +-- MigrationBusy       another `ncdma migrate` of the domain holds its lock: path
          +-- OutcomeUnknown      libvirt's migration call did not return after an abort
          +-- PeerError           the destination's `ncdma peer` failed: host, command,
          |                       peer_exit_status
          +-- TransferError       the tagged slots did not arrive whole: gpa

The CLI maps each class to its exit status; the hook turns any of them into its one
stderr line; nothing reaches the operator as a traceback.
"""

from __future__ import annotations

import os  # loaded by every interpreter already: the hook's fast path pays for no import


class NcdmaError(Exception):
    """Root of all ncdma errors: a one-line message plus a hint."""

    exit_status = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(NcdmaError):
    """A command-line argument or configuration value is invalid."""

    exit_status = 2


class ConfigError(UsageError):
    """The host configuration file ``path`` is unreadable or holds an invalid value."""

    def __init__(self, message: str, hint: str = "",
                 path: os.PathLike[str] | None = None) -> None:
        super().__init__(message, hint)
        self.path = path


class NotRootError(NcdmaError):
    """The command needs root (the system's libvirt, the state directory, QEMU's listeners)."""


class KvmError(NcdmaError):
    """/dev/kvm could not be used, or a KVM ioctl failed unexpectedly (``errno``)."""

    def __init__(self, message: str, hint: str = "", errno: int = 0) -> None:
        super().__init__(message, hint)
        self.errno = errno


class SeccompError(NcdmaError):
    """The seccomp or pidfd ``call`` failed with ``errno``."""

    def __init__(self, message: str, hint: str = "", call: str = "", errno: int = 0) -> None:
        super().__init__(message, hint)
        self.call = call
        self.errno = errno


class SlotMemoryError(NcdmaError):
    """The memory at ``hva`` of process ``pid`` cannot be mapped, read or written."""

    def __init__(self, message: str, hint: str = "", pid: int = 0, hva: int = 0) -> None:
        super().__init__(message, hint)
        self.pid = pid
        self.hva = hva


class DomainXmlError(NcdmaError):
    """A domain's XML is not well-formed or lacks what every domain has."""


class PolicyError(DomainXmlError):
    """The domain's ncdma metadata is invalid; ``attribute`` names the culprit."""

    def __init__(self, message: str, hint: str = "", attribute: str = "") -> None:
        super().__init__(message, hint)
        self.attribute = attribute


class DomainStateError(NcdmaError):
    """``domain`` is not in the state the command needs (not running with ncdma, not enabled)."""

    def __init__(self, message: str, hint: str = "", domain: str = "") -> None:
        super().__init__(message, hint)
        self.domain = domain


class StateFileError(NcdmaError):
    """The state directory's file ``path`` exists but cannot be read."""

    def __init__(self, message: str, hint: str = "",
                 path: os.PathLike[str] | None = None) -> None:
        super().__init__(message, hint)
        self.path = path


class LibvirtError(NcdmaError):
    """A libvirt call failed; the message carries libvirt's words, ``code`` its error code."""

    def __init__(self, message: str, hint: str = "", code: int = 0) -> None:
        super().__init__(message, hint)
        self.code = code


class QmpError(NcdmaError):
    """Talking to QEMU over QMP failed: no socket, no answer in time, QEMU gone, a command
    refused, or an answer ncdma cannot read. ``command`` is the QMP command (or what was
    being done), ``error_class`` QEMU's error class when QEMU refused it."""

    def __init__(self, message: str, hint: str = "", command: str = "",
                 error_class: str = "") -> None:
        super().__init__(message, hint)
        self.command = command
        self.error_class = error_class


class GuardAttachError(NcdmaError):
    """The wrapper could not hand QEMU's listener to the guard service at ``socket``;
    ``filtered`` when its filter was installed already (QEMU cannot run unguarded then)."""

    def __init__(self, message: str, hint: str = "", socket: os.PathLike[str] | None = None,
                 filtered: bool = False) -> None:
        super().__init__(message, hint)
        self.socket = socket
        self.filtered = filtered


class AttachRequestError(NcdmaError):
    """A request to the guard service is not what its protocol says (refused, never fatal)."""


class PreloadError(NcdmaError):
    """The preload library that disables KVM_X86_QUIRK_IGNORE_GUEST_PAT in QEMU (method vm)
    is missing or unreadable at ``path``."""

    def __init__(self, message: str, hint: str = "",
                 path: os.PathLike[str] | None = None) -> None:
        super().__init__(message, hint)
        self.path = path


class ConfinementError(NcdmaError):
    """ncdma's rules for a domain cannot be added to its AppArmor ``profile``, or it cannot
    be loaded."""

    def __init__(self, message: str, hint: str = "",
                 profile: os.PathLike[str] | None = None) -> None:
        super().__init__(message, hint)
        self.profile = profile


class HookTimeout(NcdmaError):
    """The hook ``operation`` ran past ``hook_timeout`` (``seconds``)."""

    def __init__(self, message: str, hint: str = "", operation: str = "",
                 seconds: float = 0.0) -> None:
        super().__init__(message, hint)
        self.operation = operation
        self.seconds = seconds


class MigrationError(NcdmaError):
    """`ncdma migrate` did not complete; the message says where the domain runs now."""


class MigrationRefused(MigrationError):
    """The preflight refused: nothing was changed."""


class MigrationFailed(MigrationError):
    """libvirt's migration job, or a phase after it, failed or was aborted."""


class MigrationBusy(MigrationError):
    """Another `ncdma migrate` of the same domain holds its lock (the file ``path``)."""

    def __init__(self, message: str, hint: str = "",
                 path: os.PathLike[str] | None = None) -> None:
        super().__init__(message, hint)
        self.path = path


class OutcomeUnknown(MigrationError):
    """libvirt's migration call did not return after an abort: where the domain runs is
    unknown (nothing is cleaned up)."""


class PeerError(MigrationError):
    """The destination's ``ncdma peer command`` on ``host`` could not run or failed
    (``peer_exit_status``: ssh's or ncdma's, None when it gave no answer)."""

    def __init__(self, message: str, hint: str = "", host: str = "", command: str = "",
                 peer_exit_status: int | None = None) -> None:
        super().__init__(message, hint)
        self.host = host
        self.command = command
        self.peer_exit_status = peer_exit_status


class TransferError(MigrationError):
    """A tagged slot at ``gpa`` did not arrive whole, or has no tagged slot to go to."""

    def __init__(self, message: str, hint: str = "", gpa: int = 0) -> None:
        super().__init__(message, hint)
        self.gpa = gpa
