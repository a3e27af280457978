"""A memslot as the guard decided it: the action taken on the request, and why.

Shared by the guard (which decides), its journal and everything that reads the journal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(str, enum.Enum):
    """What the guard does with the ioctl."""

    TAG = "tag"            # newly selected: set the flag (enforce) or note it (audit)
    KEEP = "keep"          # re-issue of a tagged slot: the flag must stay set
    UNTOUCHED = "untouched"
    DELETE = "delete"      # size 0: the slot goes away; forget it


@dataclass(frozen=True)
class Decision:
    """The action, why, and what owns the slot's memory (for the journal)."""

    action: Action
    reason: str
    owner: str = ""

    @property
    def wants_flag(self) -> bool:
        """The flag belongs on this request."""
        return self.action in (Action.TAG, Action.KEEP)
