"""One Bochs boot of a lab kernel, and what its console says, step by step.

Steps a run can be asked for (``--steps``) besides the defaults: ``qemu-plain`` (QEMU
without ncdma running portio, EPT trace on), ``guarded`` (vramfill under QEMU wrapped in
enforce mode, EPT trace on: the patched kernel's second boot in tests/intel, GUARDED_STEPS)
and ``startup`` (the start-up cost of Python and the guard: a figure, not a test).

Which steps each kernel runs (init.sh runs them in order):
- patched: ``ncdma check``, the quirk mask, EPT entries of a plain and a flagged VM, the
  hostile guest under a guarded QEMU;
- stock: ``ncdma check``, EPT entries of a plain VM, the flag refused;
- 6.12: ``ncdma check``, the quirk mask, EPT entries of a plain VM, of one whose quirk
  was disabled, the flag refused; then QEMU 7.2 running ramtouch (RAM pages written)
  without ncdma (``qemu-ram``) and wrapped with method vm through the preload library
  (``method-vm``), EPT trace on for both.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError, tail
from lab.intel.bochs import BochsRun, build_iso, run_bochs
from lab.intel.image import base_archive, python_archive, qemu_archive
from lab.intel.inside import BEGIN, END
from lab.intel.pyclosure import REPO
from lab.kernel.recipe import Recipe, Variant

STEPS = {
    Variant.PATCHED: ("cpuinfo", "check", "quirks", "ept-plain", "ept-flag", "hostile"),
    Variant.STOCK: ("cpuinfo", "check", "ept-plain", "ept-flag"),
    Variant.UPSTREAM: ("cpuinfo", "check", "quirks", "ept-plain", "ept-flag", "ept-quirk-off",
                       "qemu-ram", "method-vm"),
}
# The patched kernel's second boot (tests/intel): the guarded run takes a Bochs run's time.
GUARDED_STEPS = ("guarded",)
# Steps that run QEMU: the QEMU archive goes in only for them (it doubles the initramfs).
QEMU_STEPS = frozenset({"guarded", "startup", "hostile", "qemu-plain", "qemu-ram", "method-vm"})
TIMEOUT_S = 600.0
_SPTE = re.compile(r"kvm_mmu_set_spte: gfn ([0-9a-f]+) spte ([0-9a-f]+) .*level (\d+)")
_END = re.compile(r"^lab-step-end (\S+) (\d+) (\d+)$")


@dataclass
class Step:
    """One step's console lines, exit status, guest time and wall time."""

    name: str
    lines: list[str] = field(default_factory=list)
    status: int | None = None
    guest_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def sptes(self) -> dict[int, int]:
        """gfn -> the last SPTE KVM set for it (kvm_mmu_set_spte events, 4 KiB level)."""
        return {int(gfn, 16): int(spte, 16) for gfn, spte, level in
                (match.groups() for match in map(_SPTE.search, self.lines) if match)
                if level == "1"}

    def document(self) -> Any:
        """The JSON document the step printed: between BEGIN and END, or the whole output."""
        if BEGIN in self.lines:
            start = self.lines.index(BEGIN) + 1
            return json.loads("\n".join(self.lines[start:self.lines.index(END)]))
        start = next(index for index, line in enumerate(self.lines) if line.startswith("{"))
        return json.loads("\n".join(self.lines[start:]))

    def probe(self) -> dict[str, str]:
        """eptprobe's ``KEY VALUE`` lines as a dict (the last value of each key)."""
        pairs = (line.removeprefix("eptprobe: ").rpartition(" ") for line in self.lines
                 if line.startswith("eptprobe: "))
        return {key: value for key, _, value in pairs}


@dataclass(frozen=True)
class IntelRun:
    """A finished run: the steps, the console, the wall time."""

    variant: Variant
    steps: dict[str, Step]
    bochs: BochsRun

    def step(self, name: str) -> Step:
        """A step that ran to its end.

        :raise LabError: When it did not (with the console's tail).
        """
        found = self.steps.get(name)
        if found is None or found.status is None:
            raise LabError(f"step {name} did not finish in the {self.variant.value} kernel's "
                           f"Bochs run; console ({self.bochs.console}):\n"
                           f"{tail(self.bochs.console, 40)}")
        return found


def parse_console(text: str, marks: tuple[tuple[float, str], ...]) -> dict[str, Step]:
    """The steps between init.sh's begin and end lines, with wall times from ``marks``."""
    steps: dict[str, Step] = {}
    current: Step | None = None
    for line in text.replace("\r", "").splitlines():
        if line.startswith("lab-step-begin "):
            current = steps.setdefault(line.split()[1], Step(line.split()[1]))
        elif (match := _END.match(line)) and current is not None:
            current.status, current.guest_seconds = int(match[2]), int(match[3]) / 100
            current = None
        elif current is not None:
            current.lines.append(line)
    seen: dict[str, float] = {}
    for seconds, line in marks:
        words = line.split()
        if words[0] == "lab-step-begin":
            seen[words[1]] = seconds
        elif words[0] == "lab-step-end" and words[1] in seen and words[1] in steps:
            steps[words[1]].wall_seconds = round(seconds - seen[words[1]], 1)
    return steps


def append_line(steps: tuple[str, ...]) -> str:
    """The kernel command line: the serial console, quiet, and what init.sh needs."""
    python = Path(sys.prefix) / "bin" / "python"
    # random.trust_cpu: seed the CRNG from RDRAND at boot, or the first getrandom() (Python
    # hashes) waits a minute and more under Bochs for entropy
    return (f"console=ttyS0 quiet panic=-1 random.trust_cpu=on lab_steps={','.join(steps)} "
            f"lab_repo={REPO} lab_python={python}")


def run_intel(recipe: Recipe, run_dir: Path, timeout: float = TIMEOUT_S,
              steps: tuple[str, ...] | None = None) -> IntelRun:
    """Build (or find) the images, boot ``recipe``'s kernel under Bochs, run ``steps``
    (default: the kernel's, STEPS) and parse its console.

    :raise LabError: When something is not built, or Bochs fails or times out.
    """
    steps = steps or STEPS[recipe.variant]
    archives = [base_archive(), python_archive()]
    if QEMU_STEPS & set(steps):
        archives.append(qemu_archive())
    iso = build_iso(recipe, archives, append_line(steps))
    bochs = run_bochs(iso, run_dir, timeout)
    text = bochs.console.read_text(errors="replace") if bochs.console.exists() else ""
    return IntelRun(recipe.variant, parse_console(text, bochs.marks), bochs)
