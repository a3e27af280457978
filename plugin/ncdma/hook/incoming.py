"""The destination's gate: an incoming migration or a restore held to the domain's policy.

The decision is :mod:`ncdma.model.incoming`'s; here the ticket the XML carries is redeemed
in this host's store (:mod:`ncdma.store.tickets`), only when the policy needs one.
"""

from __future__ import annotations

import os

from ncdma.model.domain import Domain
from ncdma.model.incoming import TicketState, migrate_refusal, restore_refusal, ticket_needed
from ncdma.settings import Settings
from ncdma.virt.ticket import ticket_of, without_ticket


def incoming_refusal(domain: Domain, data: bytes, operation: str, settings: Settings,
                     now: float) -> str | None:
    """The one line refusing ``operation`` (migrate or restore) of the opted-in ``domain``
    (its XML ``data``) at ``now``, or None to let it go ahead; a valid ticket is used up.

    :raise StateFileError: When the ticket store is not root's alone.
    """
    assert domain.policy is not None
    if operation == "restore":
        return restore_refusal(domain.name, domain.policy)
    if not ticket_needed(domain.policy):
        return None
    token = ticket_of(data)
    if token is None:
        return migrate_refusal(domain.name, domain.policy, TicketState.ABSENT)
    from ncdma.store.tickets import redeem  # only a ticket to redeem pays for the store

    state = redeem(settings.state_dir, token, domain.uuid, os.uname().nodename, now)
    return migrate_refusal(domain.name, domain.policy, state)


def ticket_stripped(data: bytes) -> bytes | None:
    """The XML without its ticket, for libvirt to keep; None when it carries none."""
    return without_ticket(data).encode() if ticket_of(data) is not None else None

