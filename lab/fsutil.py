"""Small filesystem helpers that refuse to touch anything still mounted."""
from __future__ import annotations

import shutil
from pathlib import Path


def mount_points() -> list[Path]:
    """Mount points visible in this mount namespace."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            # Field 5 is the mount point, with spaces etc. octal-escaped.
            raw = line.split()[4]
            points.append(Path(raw.encode().decode("unicode_escape")))
    return points


def remove_tree(path: Path) -> None:
    """Delete path recursively; refuse if anything is mounted at or below it."""
    if not path.exists() and not path.is_symlink():
        return
    real = path.resolve()
    busy = [p for p in mount_points() if p == real or real in p.parents]
    if busy:
        raise RuntimeError(f"refusing to delete {path}: still mounted at {busy[0]}")
    shutil.rmtree(path)
