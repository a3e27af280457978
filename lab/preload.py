"""Builds method vm's preload library (preload/) into a directory, as install-host does."""

from __future__ import annotations

import subprocess
from pathlib import Path



MAKEFILE = Path(__file__).parents[1] / "preload" / "Makefile"
LIBRARY = "libncdma-pat.so"


def build_preload(directory: Path, *make_args: str) -> Path:
    """``directory``/libncdma-pat.so, built with preload/Makefile (``make_args`` added, e.g.
    ``LDFLAGS=-static-libgcc``); the source tree is left untouched.

    :raise RuntimeError: When make fails (its output in the message).
    """
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["make", "-s", "-C", str(directory), "-f", str(MAKEFILE), *make_args],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building {LIBRARY} failed: {done.stdout}{done.stderr}")
    return directory / LIBRARY
