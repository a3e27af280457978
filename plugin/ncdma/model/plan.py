"""What ncdma will do for one domain on this host: the pure start/migrate decision.

``decide_plan`` takes the parsed domain, the host's verdict and the settings, and returns
a :class:`Plan` (written to the domain's state directory for the wrapper and the guard),
a :class:`StartRefusal` (one line for libvirt's error), or None (nothing to do). No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ncdma.model.policy import Bar, Method, Policy, PolicyMode
from ncdma.model.verdict import Mode, Verdict
from ncdma.settings import Settings

from ncdma.standin import mode_text

if TYPE_CHECKING:  # the wrapper reads plans: it must not pay for lxml
    from ncdma.model.domain import Domain, VideoDevice

PLAN_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """The decided mode and everything the wrapper and guard need, for one domain start."""

    domain: str
    uuid: str
    requested: PolicyMode
    mode: Mode
    require: bool
    bars: tuple[str, ...]
    migration: str
    flag: int
    emulator: str
    devices: tuple[str, ...]
    reasons: tuple[str, ...]
    # migration='copy' on QEMU >= 10.0: device RAM allocated shareable (aux-ram-share), so
    # that `ncdma migrate` can map and cache-flush it; the guard then also traps QEMU's exit
    share_device_ram: bool = False
    # QEMU's user and group as libvirt runs it (the domain's DAC label, else qemu.conf):
    # the only credentials the guard service accepts an attach from; -1 accepts none
    qemu_uid: int = -1
    qemu_gid: int = -1
    # the domain's <emulator> as libvirt execs it (ncdma's wrapper): the guard service
    # attaches only a process running it
    wrapper: str = ""
    # enforce through the lab's stand-in flag (``flag`` is then KVM_MEM_READONLY)
    stand_in: bool = False
    # how guest PAT is honored: slot (the guard flags memslots) or vm (QEMU's preload
    # disables KVM_X86_QUIRK_IGNORE_GUEST_PAT on its VM fd; no memslot is flagged)
    method: Method = Method.SLOT
    requested_method: Method = Method.SLOT

    @property
    def mode_text(self) -> str:
        """The mode as outputs show it: 'enforce (lab stand-in flag 0x2)' under the stand-in,
        'enforce (method vm: ...)' for the whole-VM method."""
        if self.method is Method.VM and self.mode is Mode.ENFORCE:
            return "enforce (method vm: guest PAT honored for the whole VM)"
        return mode_text(self.mode.value, self.stand_in, self.flag)

    @property
    def tags_slots(self) -> bool:
        """The guard sets the flag on selected memslots (enforce mode, method slot)."""
        return self.mode is Mode.ENFORCE and self.method is Method.SLOT

    def to_json(self) -> dict[str, Any]:
        """The plan file's JSON document."""
        return {"schema_version": PLAN_SCHEMA_VERSION, "domain": self.domain, "uuid": self.uuid,
                "requested": self.requested.value, "mode": self.mode.value,
                "require": self.require, "bars": list(self.bars), "migration": self.migration,
                "flag": self.flag, "emulator": self.emulator, "devices": list(self.devices),
                "reasons": list(self.reasons), "share_device_ram": self.share_device_ram,
                "qemu_uid": self.qemu_uid, "qemu_gid": self.qemu_gid, "wrapper": self.wrapper,
                "stand_in": self.stand_in, "method": self.method.value,
                "requested_method": self.requested_method.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """Read a plan file's document back (written by this same version of ncdma)."""
        return cls(data["domain"], data["uuid"], PolicyMode(data["requested"]),
                   Mode(data["mode"]), bool(data["require"]), tuple(data["bars"]),
                   data["migration"], int(data["flag"]), data["emulator"],
                   tuple(data["devices"]), tuple(data["reasons"]),
                   bool(data.get("share_device_ram", False)), int(data.get("qemu_uid", -1)),
                   int(data.get("qemu_gid", -1)), str(data.get("wrapper", "")),
                   bool(data.get("stand_in", False)), Method(data.get("method", "slot")),
                   Method(data.get("requested_method", "slot")))


@dataclass(frozen=True)
class WrapperPlan:
    """The part of a plan the emulator wrapper reads (as QEMU's user): no more."""

    domain: str
    uuid: str
    mode: Mode
    require: bool
    emulator: str
    share_device_ram: bool
    method: Method = Method.SLOT

    @classmethod
    def of(cls, plan: Plan) -> WrapperPlan:
        """What the wrapper needs of ``plan``."""
        return cls(plan.domain, plan.uuid, plan.mode, plan.require, plan.emulator,
                   plan.share_device_ram, plan.method)

    @property
    def disables_quirk(self) -> bool:
        """QEMU must disable KVM_X86_QUIRK_IGNORE_GUEST_PAT on its VM (method vm, enforce)."""
        return self.method is Method.VM and self.mode is Mode.ENFORCE

    def to_json(self) -> dict[str, Any]:
        """The wrapper's plan file's JSON document."""
        return {"schema_version": PLAN_SCHEMA_VERSION, "domain": self.domain, "uuid": self.uuid,
                "mode": self.mode.value, "require": self.require, "emulator": self.emulator,
                "share_device_ram": self.share_device_ram, "method": self.method.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WrapperPlan:
        """Read the wrapper's plan file's document back."""
        return cls(str(data["domain"]), str(data["uuid"]), Mode(data["mode"]),
                   bool(data["require"]), str(data["emulator"]), bool(data["share_device_ram"]),
                   Method(data.get("method", "slot")))


@dataclass(frozen=True)
class StartRefusal:
    """Why the domain must not start (or be received) here: one line for the operator."""

    reason: str


def taggable_devices(gpus: tuple[VideoDevice, ...],
                     bars: frozenset[Bar]) -> tuple[VideoDevice, ...]:
    """The devices with at least one BAR the policy selects: hostmem set, or a VGA's vram."""
    return tuple(gpu for gpu in gpus
                 if (Bar.HOSTMEM in bars and gpu.hostmem > 0 and gpu.on_pci)
                 or (Bar.VRAM in bars and gpu.qemu_model.endswith(("vga", "vga-gl"))))


def _mode(requested: PolicyMode, host: Verdict) -> tuple[Mode, tuple[str, ...]]:
    """The best mode the host allows for the requested one, and why it is less."""
    if host.mode is Mode.NONE:
        return Mode.NONE, host.reasons
    if requested is PolicyMode.AUDIT:
        return Mode.AUDIT, ()
    return host.mode, host.reasons


def uncached_display_reason(domain: Domain) -> str | None:
    """Why method vm must not run this domain (a display an old guest driver maps uncached,
    not vouched for with allow_uncached_display='yes'), or None."""
    policy = domain.policy
    if not domain.uncached_displays or (policy is not None and policy.allow_uncached_display):
        return None
    return (f"its display {', '.join(domain.uncached_displays)} may be mapped uncached by its "
            f"guest driver (bochs-drm, stdvga, cirrus), ~23x slower with guest PAT honored for "
            f"the whole VM: use virtio-gpu, method='slot', or allow_uncached_display='yes' if "
            f"the guest maps VRAM write-combining")


def _resolve(domain: Domain, policy: Policy, host: Verdict) -> tuple[Method, Mode,
                                                                      tuple[str, ...]]:
    """The method and mode used for the requested ones, and why they are less."""
    if policy.method is Method.SLOT or (policy.method is Method.AUTO
                                        and host.mode is not Mode.AUDIT):
        return (Method.SLOT, *_mode(policy.mode, host))
    display = uncached_display_reason(domain)
    vm_reasons = (*host.vm_reasons, *([display] if display else []))
    if policy.method is Method.VM:
        if host.mode is Mode.NONE or policy.mode is PolicyMode.AUDIT:
            return (Method.VM, *_mode(policy.mode, host))
        return Method.VM, Mode.AUDIT if vm_reasons else Mode.ENFORCE, vm_reasons
    if policy.mode is not PolicyMode.AUDIT and not vm_reasons:  # auto: slot is audit only
        return Method.VM, Mode.ENFORCE, ()
    mode, reasons = _mode(policy.mode, host)
    return Method.SLOT, mode, (*reasons, *(f"method vm: {r}" for r in vm_reasons))


def decide_plan(domain: Domain, host: Verdict, settings: Settings,
                action: str = "start") -> Plan | StartRefusal | None:
    """Decide what ncdma does for ``domain`` on this host; ``action`` words the refusal.

    A domain that does not opt in (or says mode='off') gets None. A domain whose
    <emulator> is not this host's wrapper is refused at start (an incoming migration
    has its XML rewritten instead). A policy with require='yes' that the host cannot
    honor gets a StartRefusal; otherwise the plan says which lesser mode is used and why.
    """
    policy: Policy | None = domain.policy
    if policy is None or policy.mode is PolicyMode.OFF:
        return None
    refuse = f"ncdma: refusing to {action} {domain.name}"
    if action == "start" and domain.emulator != str(settings.wrapper):
        return StartRefusal(f"{refuse}: its <emulator> is {domain.emulator}, not ncdma's "
                            f"wrapper {settings.wrapper}: run `ncdma enable {domain.name}` "
                            f"again, or `ncdma disable {domain.name}` to opt out")
    display = uncached_display_reason(domain)
    if policy.method is Method.VM and display:
        return StartRefusal(f"{refuse} with method='vm': {display}")
    method, mode, host_reasons = _resolve(domain, policy, host)
    devices = taggable_devices(domain.gpus, policy.bars)
    reasons: list[str] = []
    if not devices and method is Method.SLOT:
        bars = ",".join(sorted(bar.value for bar in policy.bars))
        missing = (f"no virtio-gpu device has a BAR selected by bars='{bars}' "
                   f"({len(domain.gpus)} virtio-gpu device(s) found)")
        if policy.require:
            return StartRefusal(f"{refuse}: {missing}: add hostmem to its virtio-gpu "
                                f"device, change bars, or set require='no'")
        reasons.append(missing)
    if policy.require and mode.value != policy.mode.value:
        method_text = "" if policy.method is Method.SLOT else f" (method {policy.method.value})"
        return StartRefusal(f"{refuse}: its policy requires {policy.mode.value} mode{method_text} "
                            f"but this host allows {mode.value}: {'; '.join(host_reasons)} "
                            f"(run `ncdma check`)")
    reasons.extend(host_reasons)
    return Plan(
        domain=domain.name, uuid=domain.uuid, requested=policy.mode, mode=mode,
        require=policy.require, bars=tuple(sorted(bar.value for bar in policy.bars)),
        migration=policy.migration.value, flag=settings.flag,
        emulator=policy.emulator or str(settings.qemu),
        devices=tuple(gpu.alias for gpu in devices), reasons=tuple(reasons),
        stand_in=host.stand_in and mode is Mode.ENFORCE and method is Method.SLOT,
        method=method, requested_method=policy.method)
