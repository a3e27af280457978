"""A domain's ncdma policy: the attributes of its <ncdma:ncdma> metadata element.

The RelaxNG schema xml/ncdma-metadata.rng is the reference; this module parses the
same language and names the attribute and the allowed values when something is wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from ncdma.errors import PolicyError
from ncdma.model.namespace import NAMESPACE as NAMESPACE  # re-exported with the element

PREFIX = "ncdma"
ELEMENT = f"{{{NAMESPACE}}}ncdma"
_MAX_PATH = 4096


class PolicyMode(str, enum.Enum):
    """What the domain asks for (the host may only allow less)."""

    ENFORCE = "enforce"
    AUDIT = "audit"
    OFF = "off"


class MigrationPolicy(str, enum.Enum):
    """What a migration may do with tagged slots; every incoming migration and restore is
    held to it (:mod:`ncdma.model.incoming`), whoever starts it."""

    REFUSE = "refuse"
    SKIP = "skip"
    COPY = "copy"
    # the owner accepts plain libvirt migrations (virsh, Nova, oVirt, KubeVirt) and what
    # QEMU's stream does to tagged content; opted into per domain, never a default
    ANY = "any"


class Method(str, enum.Enum):
    """How guest PAT is honored: per memslot (the patched kernels' flag), for the whole VM
    (upstream's KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled), or whichever the host allows."""

    SLOT = "slot"
    VM = "vm"
    AUTO = "auto"


class Bar(str, enum.Enum):
    """A virtio-gpu BAR the policy can select for tagging."""

    HOSTMEM = "hostmem"
    VRAM = "vram"


@dataclass(frozen=True)
class Policy:
    """A parsed, valid policy; every attribute has its documented default."""

    mode: PolicyMode = PolicyMode.ENFORCE
    require: bool = False
    migration: MigrationPolicy = MigrationPolicy.REFUSE
    bars: frozenset[Bar] = frozenset({Bar.HOSTMEM})
    emulator: str | None = None
    method: Method = Method.SLOT
    # method vm with a bochs/stdvga/cirrus display: the operator vouches that its guest
    # driver maps VRAM write-combining (an uncached one is ~23x slower with guest PAT honored)
    allow_uncached_display: bool = False

    def attributes(self) -> dict[str, str]:
        """The element's attributes that describe this policy (the inverse of parse_policy)."""
        attributes = {
            "mode": self.mode.value,
            "require": "yes" if self.require else "no",
            "migration": self.migration.value,
            "bars": ",".join(bar.value for bar in Bar if bar in self.bars),
        }
        if self.emulator:
            attributes["emulator"] = self.emulator
        if self.method is not Method.SLOT:  # absent means slot: older XML stays as it was
            attributes["method"] = self.method.value
        if self.allow_uncached_display:
            attributes["allow_uncached_display"] = "yes"
        return attributes


def _choice(attributes: Mapping[str, str], name: str, kind: type[enum.Enum],
            default: enum.Enum) -> enum.Enum:
    text = attributes.get(name)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise PolicyError(f"ncdma metadata: attribute '{name}' is {text[:40]!r}",
                          f"allowed values: {allowed}", name) from None


def _yes_no(attributes: Mapping[str, str], name: str) -> bool:
    text = attributes.get(name, "no")
    if text not in ("yes", "no"):
        raise PolicyError(f"ncdma metadata: attribute '{name}' is {text[:40]!r}",
                          "allowed values: yes, no", name)
    return text == "yes"


def _bars(attributes: Mapping[str, str]) -> frozenset[Bar]:
    text = attributes.get("bars")
    if text is None:
        return frozenset({Bar.HOSTMEM})
    names = text.split(",")
    try:
        bars = [Bar(name) for name in names]
    except ValueError:
        bars = []
    if not bars or len(set(bars)) != len(names):
        raise PolicyError(f"ncdma metadata: attribute 'bars' is {text[:40]!r}",
                          "allowed: a comma-separated list of hostmem, vram, each at most once",
                          "bars")
    return frozenset(bars)


def _emulator(attributes: Mapping[str, str]) -> str | None:
    text = attributes.get("emulator")
    if text is None:
        return None
    if not text.startswith("/") or len(text) > _MAX_PATH or any(c.isspace() for c in text):
        raise PolicyError(f"ncdma metadata: attribute 'emulator' is {text[:40]!r}",
                          "it must be an absolute path without spaces; run `ncdma enable` "
                          "again to rewrite it", "emulator")
    return text


def parse_policy(attributes: Mapping[str, str]) -> Policy:
    """Parse the metadata element's attributes (names without namespace).

    :raise PolicyError: When an attribute is unknown or has a value outside its choices.
    """
    known = {"mode", "require", "migration", "bars", "emulator", "method",
             "allow_uncached_display"}
    unknown = sorted(set(attributes) - known)
    if unknown:
        raise PolicyError(f"ncdma metadata: unknown attribute '{unknown[0][:40]}'",
                          f"allowed attributes: {', '.join(sorted(known))}", unknown[0])
    return Policy(
        mode=PolicyMode(_choice(attributes, "mode", PolicyMode, PolicyMode.ENFORCE)),
        require=_yes_no(attributes, "require"),
        migration=MigrationPolicy(_choice(attributes, "migration", MigrationPolicy,
                                          MigrationPolicy.REFUSE)),
        bars=_bars(attributes),
        emulator=_emulator(attributes),
        method=Method(_choice(attributes, "method", Method, Method.SLOT)),
        allow_uncached_display=_yes_no(attributes, "allow_uncached_display"),
    )
