"""The destination's pure decision on an incoming migration or a restore, per policy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ncdma.model.incoming import TicketState, migrate_refusal, restore_refusal, ticket_needed
from ncdma.model.policy import Bar, Method, MigrationPolicy, Policy, PolicyMode

HOSTMEM, VRAM = frozenset({Bar.HOSTMEM}), frozenset({Bar.VRAM})
BOTH = HOSTMEM | VRAM


def policy(migration: str, bars: frozenset[Bar] = VRAM, mode: str = "enforce") -> Policy:
    return Policy(PolicyMode(mode), False, MigrationPolicy(migration), bars)


@pytest.mark.parametrize("migration, bars, needed", [
    ("refuse", HOSTMEM, True), ("refuse", VRAM, True),
    ("copy", HOSTMEM, True), ("copy", BOTH, True),
    # QEMU's stream never carries hostmem blob mappings: skip is what a plain migration does
    ("skip", HOSTMEM, False), ("skip", VRAM, True), ("skip", BOTH, True),
    ("any", HOSTMEM, False), ("any", BOTH, False),
])
def test_which_policies_need_a_ticket(migration: str, bars: frozenset[Bar],
                                      needed: bool) -> None:
    assert ticket_needed(policy(migration, bars)) is needed


@pytest.mark.parametrize("method", ["vm", "auto"])
def test_skip_needs_a_ticket_where_guest_pat_may_be_honored_for_the_whole_vm(
        method: str) -> None:
    """Method vm honors guest PAT in all of the VM's memory, which QEMU's stream carries."""
    assert ticket_needed(replace(policy("skip", HOSTMEM), method=Method(method)))
    assert not ticket_needed(replace(policy("any", HOSTMEM), method=Method(method)))


def test_mode_off_needs_no_ticket_nothing_is_ever_tagged() -> None:
    assert not ticket_needed(policy("refuse", mode="off"))


def test_any_is_never_the_default() -> None:
    assert Policy().migration is MigrationPolicy.REFUSE


@pytest.mark.parametrize("migration", ["refuse", "copy", "skip"])
def test_a_plain_migration_is_refused_with_one_line_naming_the_policy_and_the_way(
        migration: str) -> None:
    line = migrate_refusal("vm1", policy(migration), TicketState.ABSENT)
    assert line is not None and "\n" not in line
    assert line.startswith("ncdma: refusing the incoming migration of vm1")
    assert f"migration='{migration}'" in line and "`ncdma migrate vm1" in line
    assert "--migration any" in line


@pytest.mark.parametrize("state, words", [
    (TicketState.USED, "already used"), (TicketState.EXPIRED, "expired"),
    (TicketState.OTHER_DOMAIN, "another domain"), (TicketState.OTHER_HOST, "another host"),
    (TicketState.UNKNOWN, "unknown"), (TicketState.MALFORMED, "malformed"),
])
def test_a_bad_ticket_is_refused_saying_what_is_wrong_with_it(state: TicketState,
                                                              words: str) -> None:
    line = migrate_refusal("vm1", policy("copy"), state)
    assert line is not None and words in line and "migration='copy'" in line
    assert "\n" not in line


def test_a_valid_ticket_is_accepted_and_no_ticket_is_needed_where_none_is() -> None:
    assert migrate_refusal("vm1", policy("refuse"), TicketState.VALID) is None
    assert migrate_refusal("vm1", policy("any"), TicketState.ABSENT) is None
    assert migrate_refusal("vm1", policy("skip", HOSTMEM), TicketState.ABSENT) is None


@pytest.mark.parametrize("migration, bars", [("refuse", HOSTMEM), ("copy", VRAM),
                                             ("skip", VRAM), ("skip", BOTH)])
def test_a_restore_is_refused_where_a_plain_migration_would_be(migration: str,
                                                               bars: frozenset[Bar]) -> None:
    line = restore_refusal("vm1", policy(migration, bars))
    assert line is not None and "\n" not in line
    assert line.startswith("ncdma: refusing to restore vm1")
    assert f"migration='{migration}'" in line
    for way in ("virsh managedsave-edit vm1", "virsh save-image-edit",
                "virsh start --force-boot vm1"):
        assert way in line


@pytest.mark.parametrize("migration, bars", [("any", VRAM), ("skip", HOSTMEM)])
def test_a_restore_goes_ahead_where_a_plain_migration_would(migration: str,
                                                           bars: frozenset[Bar]) -> None:
    assert restore_refusal("vm1", policy(migration, bars)) is None

