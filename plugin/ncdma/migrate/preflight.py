"""Before any memory moves: what the source and the destination say, and what to do.

:func:`decide_migration` is pure: it takes the facts and returns a
:class:`MigrationDecision` (plain libvirt migration, skip, or copy) or a
:class:`MigrationRefusal` that says exactly why and what to change. Whether QEMU's RAM
stream carries a selected slot is its record's ``in_qemu_stream`` (vram is a RAMBlock;
hostmem blob mappings never are, FACTS.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ncdma import __version__
from ncdma.migrate.options import MigrateOptions
from ncdma.model.slot import SlotRecord
from ncdma.model.verdict import Mode

_MODE_RANK = {Mode.NONE.value: 0, Mode.AUDIT.value: 1, Mode.ENFORCE.value: 2}


class Strategy(str, enum.Enum):
    """How the domain migrates."""

    PLAIN = "plain"  # as `virsh migrate`: no tagged slot to care about
    SKIP = "skip"    # tagged content is not carried (none of it is in QEMU's stream)
    COPY = "copy"    # tagged content is read at the source's exit and written before resume


def describe_slot(slot: SlotRecord) -> str:
    """One line for the operator about a selected slot."""
    backing = "in QEMU's RAM stream" if slot.in_qemu_stream else "not in QEMU's stream"
    return (f"slot {slot.slot:#x} {slot.gpa:#x}+{slot.size:#x} {slot.owner.describe()} "
            f"(flag {'set' if slot.flag_set else 'not set, audit'}; {backing})")


@dataclass(frozen=True)
class SourceFacts:
    """The domain on this host: its policy (None without ncdma) and its tagged slots."""

    domain: str
    uuid: str
    migration: str | None = None
    requested: str | None = None
    require: bool = False
    mode: str | None = None
    selected: tuple[SlotRecord, ...] = ()
    guard_alive: bool = False
    capture_at_exit: bool = False
    notes: tuple[str, ...] = ()
    method: str = "slot"  # the plan's method: slot (memslot flag) or vm (the whole VM)

    @property
    def opted_in(self) -> bool:
        """True if ncdma runs this domain here."""
        return self.migration is not None

    @property
    def honors_guest_pat_per_vm(self) -> bool:
        """The domain runs here with KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled (method vm,
        enforce): its destination must be able to do the same."""
        return self.method == "vm" and self.mode == Mode.ENFORCE.value


@dataclass(frozen=True)
class MigrationDecision:
    """What `ncdma migrate` will do."""

    strategy: Strategy
    source: SourceFacts
    destination: dict[str, Any] | None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class MigrationRefusal:
    """Why the domain is not migrated, and what to change."""

    reason: str


def _destination_problems(source: SourceFacts, destination: dict[str, Any]) -> list[str]:
    problems = [f"{what} is not installed there ({how})" for ok, what, how in (
        (destination.get("hook_installed"), "ncdma's libvirt hook", "run scripts/install-host "
         "or the Ansible role there"),
        (destination.get("guard_service"), "ncdma's guard service", "start ncdma-guardd there"),
        (destination.get("wrapper"), "ncdma's emulator wrapper", "run scripts/install-host "
         "there")) if not ok]
    if destination.get("ncdma") != __version__:
        problems.append(f"it runs ncdma {destination.get('ncdma')}, this host {__version__} "
                        f"(install the same version on both: the role's ncdma_version)")
    mode = str(destination.get("mode"))
    if source.selected and mode == Mode.NONE.value:
        problems.append(f"it cannot guard VMs at all: {'; '.join(destination['reasons'])}")
    if source.require and _MODE_RANK.get(mode, 0) < _MODE_RANK.get(str(source.requested), 0):
        problems.append(f"the policy requires {source.requested} mode but it allows {mode}: "
                        f"{'; '.join(destination['reasons'])}")
    methods = destination.get("methods", ["slot"] if mode == Mode.ENFORCE.value else [])
    if source.honors_guest_pat_per_vm and "vm" not in methods:
        why = destination.get("vm_reasons") or ["its ncdma does not know method vm: update it"]
        problems.append(f"the domain honors guest PAT for the whole VM (method vm) but the "
                        f"destination does not allow method vm: {'; '.join(why)}")
    return problems


def _slot_lines(slots: tuple[SlotRecord, ...]) -> str:
    return "; ".join(describe_slot(slot) for slot in slots)


def decide_migration(source: SourceFacts, destination: dict[str, Any] | None,
                     options: MigrateOptions) -> MigrationDecision | MigrationRefusal:
    """Decide how to migrate; ``destination`` is the peer's preflight (None if not asked)."""
    refuse = f"ncdma: refusing to migrate {source.domain}"
    if not source.opted_in:
        return MigrationDecision(Strategy.PLAIN, source, destination, source.notes)
    if destination is not None:
        problems = _destination_problems(source, destination)
        if problems:
            return MigrationRefusal(f"{refuse}: the destination cannot honor its policy: "
                                    f"{'; '.join(problems)}")
    if not source.selected:
        return MigrationDecision(Strategy.PLAIN, source, destination,
                                 (*source.notes, "no tagged slot: migrates as with virsh"))
    count = f"{len(source.selected)} tagged slot(s): {_slot_lines(source.selected)}"
    if options.offline:
        return MigrationRefusal(f"{refuse}: --offline moves only its definition, and it runs "
                                f"with {count}. Migrate it live (drop --offline), or shut it "
                                f"down first")
    if source.migration == "any":
        return MigrationDecision(Strategy.PLAIN, source, destination, (
            *source.notes, f"migration='any': carried as QEMU's stream carries them, not "
                           f"verified (vram as read through the caches, hostmem blobs not at "
                           f"all): {count}"))
    if source.migration == "refuse":
        return MigrationRefusal(f"{refuse}: its policy is migration='refuse' and it has "
                                f"{count}. Set migration='copy' (`ncdma enable {source.domain} "
                                f"--migration copy`, then restart it) to carry them safely")
    if source.migration == "skip":
        streamed = tuple(slot for slot in source.selected if slot.in_qemu_stream)
        if streamed:
            return MigrationRefusal(f"{refuse}: migration='skip' would leave QEMU carrying "
                                    f"tagged memory unsafely: {_slot_lines(streamed)}. Use "
                                    f"migration='copy' (`ncdma enable {source.domain} "
                                    f"--migration copy`, then restart it)")
        return MigrationDecision(Strategy.SKIP, source, destination,
                                 (*source.notes, f"skipped: {count}"))
    problems = []
    if not source.guard_alive:
        problems.append("its guard is not running on this host (see `ncdma status`)")
    if not source.capture_at_exit:
        problems.append("it was started without shareable device RAM, so the guard cannot "
                        "read its slots at the end: restart it on QEMU >= 10.0 with this "
                        "version of ncdma")
    if destination is not None and not destination.get("aux_ram_share"):
        problems.append(f"the destination's QEMU {destination.get('qemu')} lacks "
                        f"-machine aux-ram-share (QEMU >= 10.0 needed to flush caches there)")
    if options.postcopy:
        problems.append("--postcopy would run the guest on the destination before its tagged "
                        "slots are in place: drop --postcopy")
    if problems:
        return MigrationRefusal(f"{refuse} with migration='copy': {'; '.join(problems)}")
    return MigrationDecision(Strategy.COPY, source, destination,
                             (*source.notes, f"copied: {count}"))
