"""Tests on this machine's real kernel, /dev/kvm and the installed ncdma command.

A missing /dev/kvm is a failure with its reason, never a skip: CI has KVM.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.guarded import GuardedHost, guarded_host


@pytest.fixture(scope="session", autouse=True)
def require_kvm() -> None:
    if not os.path.exists("/dev/kvm"):
        pytest.fail("/dev/kvm is missing: these tests need KVM (CI machines have it)")


def run_ncdma(args: Sequence[str], prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run the installed ncdma command line as an operator would, optionally under a wrapper."""
    return subprocess.run([*prefix, sys.executable, "-m", "ncdma", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory (unix socket paths stay under 108 bytes) that other users may
    traverse, as /run is: the attack tests run some processes as an unprivileged user."""
    with tempfile.TemporaryDirectory(prefix="g", dir="/tmp") as directory:
        os.chmod(directory, 0o755)
        yield Path(directory)


@pytest.fixture
def host(short_tmp: Path) -> Iterator[GuardedHost]:
    """A running guard service with its own state directory."""
    with guarded_host(short_tmp) as guarded:
        yield guarded


@pytest.fixture
def faulty_host(short_tmp: Path) -> Iterator[GuardedHost]:
    """A host whose guard service honours the test's fault file ``root/fault`` (tests only)."""
    guarded = GuardedHost(short_tmp)
    guarded.start_service(NCDMA_FAULT_FILE=str(short_tmp / "fault"))
    try:
        yield guarded
    finally:
        guarded.stop_service()


@contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """``path``, created, as a tmpfs of ``size`` (mount's size=) of its own until the end."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "ncdma-test",
                    str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
