"""ncdma never hangs a VM (issue 13): QEMU 7.2 under KVM, the wrapper, guardd and its guards.

Each test attaches a guard to a QEMU whose guest waits (lab/gated.py), takes the
guard away in one of the ways a host does (service restarted or killed, guard killed again
and again, stopped, state directory full, a guard that cannot come back), then lets the
guest make its memslot calls: QEMU must get every answer and finish. A QEMU left waiting
in ioctl(KVM_SET_USER_MEMORY_REGION) is the failure.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncdma.model.verdict import Mode
from lab.guests.build import exit_code
from lab.gated import GatedQemu
from lab.guarded import GuardedHost, guarded_host
from tests.host.conftest import mounted_tmpfs

DONE = exit_code("STATUS_TOGGLE_DONE")


@pytest.fixture
def qemu(host: GuardedHost, tmp_path: Path) -> Iterator[GatedQemu]:
    gated = GatedQemu(host, host.plan(Mode.AUDIT), tmp_path)
    yield gated
    gated.kill()


def _wait_for_new_guard(host: GuardedHost, domain: str, old: int, death: int) -> int:
    deadline = time.monotonic() + 30
    while (pid := host.guard_pid(domain)) in (None, old) or not _alive(pid):
        assert time.monotonic() < deadline, f"no guard replaced guard {old} (death {death})"
        time.sleep(0.02)
    assert pid is not None
    return pid


def _alive(pid: int | None) -> bool:
    """``pid`` runs (a zombie does not)."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_guard_killed_after_the_service_was_restarted(host: GuardedHost,
                                                      qemu: GatedQemu) -> None:
    guard = qemu.wait_guarded()
    host.stop_service()  # what install-host and every Ansible handler run do
    host.start_service()
    _kill(guard)
    qemu.go()
    assert qemu.finish() == DONE, qemu.stderr()


def test_guard_killed_after_the_service_was_sigkilled(host: GuardedHost,
                                                      qemu: GatedQemu) -> None:
    guard = qemu.wait_guarded()
    assert host.service is not None
    host.service.kill()
    host.service.wait()
    _kill(guard)
    qemu.go()
    assert qemu.finish() == DONE, qemu.stderr()


def test_guard_sigstopped(host: GuardedHost, qemu: GatedQemu) -> None:
    guard = qemu.wait_guarded()
    os.kill(guard, signal.SIGSTOP)
    try:
        qemu.go()
        assert qemu.finish() == DONE, qemu.stderr()
    finally:
        if _alive(guard):
            os.kill(guard, signal.SIGKILL)


def test_guard_killed_101_times(host: GuardedHost, qemu: GatedQemu) -> None:
    guard = qemu.wait_guarded()
    for death in range(1, 102):
        _kill(guard)
        guard = _wait_for_new_guard(host, qemu.domain, guard, death)
    qemu.go()
    assert qemu.finish() == DONE, qemu.stderr()


@pytest.fixture
def full_host(short_tmp: Path) -> Iterator[GuardedHost]:
    """A host whose state directory is a 1 MiB tmpfs of its own (filled by the test)."""
    with mounted_tmpfs(short_tmp / "state", "1m"), guarded_host(short_tmp) as guarded:
        yield guarded


def _fill(directory: Path) -> None:
    with open(directory / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err


def test_state_directory_full(full_host: GuardedHost, tmp_path: Path) -> None:
    # more memslot calls than the service restarts a guard (100) in the code of acbc127
    qemu = GatedQemu(full_host, full_host.plan(Mode.AUDIT), tmp_path, TOGGLES=200)
    try:
        qemu.wait_guarded()
        _fill(full_host.settings.state_dir)
        qemu.go()
        assert qemu.finish() == DONE, qemu.stderr()
        assert "No space left on device" in full_host.log()
    finally:
        qemu.kill()


@pytest.mark.parametrize("require", [False, True])
def test_a_guard_that_cannot_come_back(faulty_host: GuardedHost, tmp_path: Path,
                                       require: bool) -> None:
    """Every successor dies at its start: require='no' runs on untagged; require='yes'
    stops QEMU cleanly with one line in its log (libvirt's domain log)."""
    qemu = GatedQemu(faulty_host, faulty_host.plan(Mode.AUDIT, require=require), tmp_path)
    try:
        guard = qemu.wait_guarded()
        (faulty_host.root / "fault").write_text("guard-start")
        _kill(guard)
        qemu.go()
        status = qemu.finish()
    finally:
        qemu.kill()
    stderr = qemu.stderr()
    ours = [line for line in stderr.splitlines() if line.startswith("ncdma")]
    assert "Traceback" not in stderr
    if not require:
        assert status == DONE, stderr
        assert ours == []
    else:
        assert status == 0, stderr  # QEMU's own clean exit on SIGTERM
        assert len(ours) == 1 and "require='yes'" in ours[0], stderr
