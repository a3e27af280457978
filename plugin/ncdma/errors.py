"""The one exception tree of ncdma.

Every error an operator can meet is a subclass of :class:`NcdmaError` and carries
a message that names the problem and a hint that says what to do next::

    NcdmaError
     +-- UsageError           bad command line or configuration value (exit 2)
     +-- KvmError             a KVM ioctl or /dev/kvm itself failed (exit 1)
     +-- ConfigError          /etc/ncdma/ncdma.conf is unreadable or has a bad value (exit 2)
     +-- DomainXmlError       a domain's XML cannot be parsed (exit 1)
     |    +-- PolicyError     the domain's <ncdma:ncdma> metadata is invalid (exit 1)
     +-- LibvirtError         a libvirt call failed (exit 1)
     +-- QmpError             QMP to QEMU failed, timed out or was not understood (exit 1)

The CLI maps each class to its documented exit status; nothing else reaches
the operator as a traceback.
"""

from __future__ import annotations


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


class KvmError(NcdmaError):
    """/dev/kvm could not be used, or a KVM ioctl failed unexpectedly."""

    def __init__(self, message: str, hint: str = "", errno: int = 0) -> None:
        super().__init__(message, hint)
        self.errno = errno


class ConfigError(UsageError):
    """The host configuration file is unreadable or holds an invalid value."""


class DomainXmlError(NcdmaError):
    """A domain's XML is not well-formed or lacks what every domain has."""


class PolicyError(DomainXmlError):
    """The domain's ncdma metadata is invalid; the message names the attribute."""


class LibvirtError(NcdmaError):
    """A libvirt call failed; the message carries libvirt's own words."""


class QmpError(NcdmaError):
    """Talking to QEMU over QMP failed: no socket, no answer in time, QEMU gone, a command
    refused, or an answer ncdma cannot read. The message names the socket or command."""
