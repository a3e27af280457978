"""The destination's pure decision: may an incoming migration or a restore go ahead?

A plain libvirt migration (virsh, Nova, oVirt, KubeVirt) moves tagged memory the way QEMU's
stream does: vram unverified (a non-snooping device's writes are invisible to KVM's dirty
log, and QEMU reads and writes it through the CPU's caches), hostmem blob mappings not at
all. Only `ncdma migrate` carries tagged content as ``copy`` says, or checks what ``skip``
and ``refuse`` promise, and it proves it started the migration with a one-time ticket
(:mod:`ncdma.store.tickets`) that the destination's hook redeems.

A ticket is needed unless a plain migration cannot break the policy:

- ``migration='any'``: the owner accepted plain migrations;
- ``mode='off'``: ncdma never tags anything for the domain;
- ``migration='skip'`` with ``bars='hostmem'`` alone and ``method='slot'``: QEMU's stream
  never carries blob mappings, so a plain migration skips exactly what ``skip`` skips, and
  the destination's hook still checks that it can run the domain's mode. With ``vram``
  selected QEMU streams the tagged vram itself, which ``skip`` forbids; with method ``vm``
  (or ``auto``, which may become ``vm``) guest PAT is honored for all of the VM's memory,
  which QEMU streams: a ticket is needed.

A saved image (``virsh save``, managed save) is a migration into a file that ncdma never
sees: nothing can copy tagged content into it or check it at the source. So a restore is
accepted exactly where a plain migration needs no ticket. No I/O here.
"""

from __future__ import annotations

import enum

from ncdma.model.policy import Bar, Method, MigrationPolicy, Policy, PolicyMode


class TicketState(str, enum.Enum):
    """What the destination's ticket store says of the ticket an incoming XML carries."""

    ABSENT = "absent"              # the XML carries no ticket
    VALID = "valid"                # redeemed now: it can never be used again
    MALFORMED = "malformed"        # not 64 lowercase hex digits
    UNKNOWN = "unknown"            # never issued here (forged, or issued by another host)
    USED = "used"                  # redeemed before
    EXPIRED = "expired"            # past its expiry (or issued "in the future")
    OTHER_DOMAIN = "other-domain"  # issued for another domain's UUID
    OTHER_HOST = "other-host"      # issued by another host sharing this state directory


_WHY = {
    TicketState.ABSENT: "was not started by `ncdma migrate` (it carries no ncdma ticket)",
    TicketState.MALFORMED: "carries a malformed ncdma ticket",
    TicketState.UNKNOWN: "carries an ncdma ticket unknown to this host",
    TicketState.USED: "carries an ncdma ticket that was already used",
    TicketState.EXPIRED: "carries an expired ncdma ticket",
    TicketState.OTHER_DOMAIN: "carries an ncdma ticket issued for another domain",
    TicketState.OTHER_HOST: "carries an ncdma ticket issued for another host",
}


def ticket_needed(policy: Policy) -> bool:
    """Whether a plain libvirt migration could move this domain against its policy."""
    if policy.mode is PolicyMode.OFF or policy.migration is MigrationPolicy.ANY:
        return False
    return not (policy.migration is MigrationPolicy.SKIP and policy.bars == {Bar.HOSTMEM}
                and policy.method is Method.SLOT)


def migrate_refusal(name: str, policy: Policy, ticket: TicketState) -> str | None:
    """The one line refusing an incoming migration of domain ``name``, or None to accept."""
    if not ticket_needed(policy) or ticket is TicketState.VALID:
        return None
    return (f"ncdma: refusing the incoming migration of {name}: its policy is "
            f"migration='{policy.migration.value}' and this migration {_WHY[ticket]}: "
            f"migrate it with `ncdma migrate {name} DESTURI`, or allow plain migrations "
            f"with `ncdma enable {name} --migration any` (its tagged content then goes "
            f"unverified)")


def restore_refusal(name: str, policy: Policy) -> str | None:
    """The one line refusing to restore domain ``name`` from a saved image, or None."""
    if not ticket_needed(policy):
        return None
    return (f"ncdma: refusing to restore {name}: its policy is "
            f"migration='{policy.migration.value}' and a saved image holds its tagged "
            f"memory as QEMU streamed it, unverified, or not at all: to restore it anyway set "
            f"migration='any' in the image (`virsh managedsave-edit {name}`, `virsh "
            f"save-image-edit FILE`), or boot it afresh (`virsh start --force-boot {name}` "
            f"discards its managed save)")
