"""Tests on this machine's real kernel, /dev/kvm and the installed ncdma command.

A missing /dev/kvm is a failure with its reason, never a skip: CI has KVM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import pytest


@pytest.fixture(scope="session", autouse=True)
def require_kvm() -> None:
    if not os.path.exists("/dev/kvm"):
        pytest.fail("/dev/kvm is missing: these tests need KVM (CI machines have it)")


def run_ncdma(args: Sequence[str], prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run the installed ncdma command line as an operator would, optionally under a wrapper."""
    return subprocess.run([*prefix, sys.executable, "-m", "ncdma", *args],
                          capture_output=True, text=True, timeout=60, check=False)
