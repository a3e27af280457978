"""One-time migration tickets: issued by ``ncdma peer ticket``, redeemed by the migrate hook.

A ticket is a random 256-bit token (64 hex digits). Only its SHA-256 is stored, as
``<state_dir>/tickets/<sha256>`` (root's, 0600, in a 0700 directory root alone may
write), holding the domain's UUID, the host that issued it and its expiry. Whoever cannot
write that directory can neither forge a ticket (they would need a token whose hash is
there) nor learn one from the store.

Redeeming checks the record, then renames it to ``<sha256>.used``: rename is atomic, so of
any number of concurrent redeems exactly one succeeds and a ticket is never accepted
twice. A ticket presented for the wrong domain or host is left valid for its own.
Expired and used records are removed whenever a new ticket is issued.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ncdma.errors import StateFileError
from ncdma.model.incoming import TicketState
from ncdma.store.files import PRIVATE, PRIVATE_DIR, open_private_dir, write_json

#: Seconds a ticket lives: `ncdma migrate` redeems it within seconds of its preflight.
TICKET_TTL_S = 120.0
_TOKEN = re.compile(r"[0-9a-f]{64}")
_USED = ".used"


@dataclass(frozen=True)
class Ticket:
    """An issued ticket: the token (only its holder knows it) and its expiry (epoch s)."""

    token: str
    expires: float


def tickets_dir(state_dir: Path) -> Path:
    """The directory of the ticket records."""
    return state_dir / "tickets"


def _record_name(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _read(directory: int, name: str) -> dict[str, object] | None:
    """The record ``name`` in ``directory``, or None when it is missing or unreadable."""
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except FileNotFoundError:
        return None
    with os.fdopen(descriptor, encoding="utf-8") as handle:
        try:
            record = json.loads(handle.read(4096))
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


def _purge(directory: int, now: float) -> None:
    """Remove the records of tickets expired or used more than a lifetime ago."""
    for name in os.listdir(directory):
        record = _read(directory, name) if not name.startswith(".") else None
        expires = record.get("expires") if record else None
        if not isinstance(expires, (int, float)) or expires + TICKET_TTL_S < now:
            os.unlink(name, dir_fd=directory)


def issue(state_dir: Path, uuid: str, host: str, now: float) -> Ticket:
    """A new ticket for domain ``uuid`` migrating to ``host`` (this host), valid from ``now``
    for :data:`TICKET_TTL_S` seconds."""
    path = tickets_dir(state_dir)
    with open_private_dir(path, PRIVATE_DIR, create=True) as directory:
        os.fchmod(directory, PRIVATE_DIR)
        _purge(directory, now)
    ticket = Ticket(secrets.token_hex(32), now + TICKET_TTL_S)
    write_json(path / _record_name(ticket.token),
               {"uuid": uuid, "host": host, "issued": now, "expires": ticket.expires}, PRIVATE)
    return ticket


def redeem(state_dir: Path, token: str, uuid: str, host: str, now: float) -> TicketState:
    """Check ``token`` for domain ``uuid`` on ``host`` at ``now``; a valid one is used up.

    :raise StateFileError: When the store is not root's alone (nothing there is trusted).
    """
    if not _TOKEN.fullmatch(token):
        return TicketState.MALFORMED
    path, name = tickets_dir(state_dir), _record_name(token)
    if not path.exists():
        return TicketState.UNKNOWN
    try:
        with open_private_dir(path) as directory:
            record = _read(directory, name)
            if record is None:
                used = _read(directory, name + _USED) is not None
                return TicketState.USED if used else TicketState.UNKNOWN
            state = _check(record, uuid, host, now)
            if state is not TicketState.VALID:
                return state
            try:
                os.rename(name, name + _USED, src_dir_fd=directory, dst_dir_fd=directory)
            except FileNotFoundError:
                return TicketState.USED  # another redeem renamed it first
            return TicketState.VALID
    except PermissionError as err:
        raise StateFileError(f"the ticket store {path} is not trusted: {err}",
                             "it must be root's alone (mode 0700); remove it and retry the "
                             "migration with `ncdma migrate`", path) from None


def _check(record: dict[str, object], uuid: str, host: str, now: float) -> TicketState:
    expires, issued = record.get("expires"), record.get("issued")
    if record.get("uuid") != uuid:
        return TicketState.OTHER_DOMAIN
    if record.get("host") != host:
        return TicketState.OTHER_HOST
    if not isinstance(expires, (int, float)) or not isinstance(issued, (int, float)) \
            or not issued <= now < expires:
        return TicketState.EXPIRED
    return TicketState.VALID
