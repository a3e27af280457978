"""The record of one `ncdma migrate`: phases with times, downtime, bytes, every tagged slot."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

SUMMARY_SCHEMA_VERSION = 1


@dataclass
class Summary:
    """Filled in phase by phase; printed as text or JSON at the end."""

    domain: str
    destination: str
    strategy: str = ""
    outcome: str = "failed"
    phases: list[dict[str, Any]] = field(default_factory=list)
    downtime_ms: dict[str, float] = field(default_factory=dict)
    memory_bytes: int = 0
    slots: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _phase: tuple[str, float] | None = None

    def begin(self, phase: str) -> None:
        """Start timing ``phase`` (ending the previous one)."""
        self.end()
        self._phase = (phase, time.monotonic())

    def end(self) -> None:
        """Stop timing the running phase."""
        if self._phase is not None:
            name, began = self._phase
            self.phases.append({"phase": name, "seconds": round(time.monotonic() - began, 4)})
            self._phase = None

    def to_json(self) -> dict[str, Any]:
        """The --json document."""
        self.end()
        return {"schema_version": SUMMARY_SCHEMA_VERSION, "domain": self.domain,
                "destination": self.destination, "strategy": self.strategy,
                "outcome": self.outcome, "phases": self.phases, "downtime_ms": self.downtime_ms,
                "memory_bytes": self.memory_bytes, "slots": self.slots, "notes": self.notes,
                "error": None}  # a failure's document has the CLI's error object here

    def to_text(self) -> str:
        """The human summary."""
        self.end()
        lines = [f"{self.domain} -> {self.destination}: {self.outcome} ({self.strategy})"]
        lines.append("  phases: " + ", ".join(f"{phase['phase']} {phase['seconds']:.3f} s"
                                             for phase in self.phases))
        if self.downtime_ms:
            lines.append("  downtime: " + ", ".join(f"{key} {value:.1f} ms"
                                                   for key, value in self.downtime_ms.items()))
        if self.memory_bytes:
            lines.append(f"  memory carried by QEMU: {self.memory_bytes / 2**20:.1f} MiB")
        for slot in self.slots:
            checks = ""
            if "sha256_destination" in slot:
                same = slot["sha256_source"] == slot["sha256_destination"]
                checks = (f", sha256 {slot['sha256_source'][:16]} on both sides" if same
                          else ", CHECKSUMS DIFFER")
            lines.append(f"  slot {slot['slot']:#x} {slot['gpa']:#x}+{slot['size']:#x} "
                         f"{slot['owner']}: {slot['action']}{checks}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
