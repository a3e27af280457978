"""The lab's stand-in flag: KVM_MEM_READONLY in place of KVM_MEM_NON_COHERENT_DMA, lab only.

The lab machines' kernel rejects the patched flag, so without a stand-in every lab test of the
hook, guard, status and migration would run in audit mode. On that kernel KVM_MEM_READONLY
(0x2) behaves as the patched flag does for the guard's purposes: accepted when a slot is
created, kept when the slot is re-issued with dirty logging, EINVAL when a re-issue drops it
or adds it to an existing slot (FACTS.md). Guest writes to such a slot become MMIO exits that
QEMU completes: correct, slower (bench/standin.py). It changes no memory type, so it proves
ncdma's enforce paths, never a GPU's coherence.

The setting (``lab_stand_in = yes`` in ncdma.conf) is honored only on a host that carries
the lab's marker file, which only the lab writes (lab/hostfiles.py); install-host and the
Ansible role refuse to write the setting elsewhere. With it, the host's verdict may be
enforce whatever the CPU vendor, and every output that shows the mode says
"lab stand-in flag 0x2".
"""

from __future__ import annotations

from pathlib import Path

STAND_IN_FLAG = 1 << 1  # KVM_MEM_READONLY (ncdma.kvm.abi; this module sits below kvm)
#: Written by the lab into each lab host's root; nothing else creates it.
LAB_MARKER = Path("/etc/ncdma-lab-host")


def is_lab_host() -> bool:
    """True on a host the lab built (its marker file exists)."""
    return LAB_MARKER.is_file()


def label(flag: int) -> str:
    """How every output names the stand-in: 'lab stand-in flag 0x2'."""
    return f"lab stand-in flag {flag:#x}"


def mode_text(mode: str, stand_in: bool, flag: int) -> str:
    """A mode as outputs show it: 'enforce (lab stand-in flag 0x2)' under the stand-in."""
    return f"{mode} ({label(flag)})" if stand_in and mode == "enforce" else mode
