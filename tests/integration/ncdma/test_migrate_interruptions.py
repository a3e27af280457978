"""`ncdma migrate` interrupted, and a `copy` VM stopped without its guard (issue 13), on the lab.

Signals reach `ncdma migrate` inside h1 the way an operator's do (kill, Ctrl-C = SIGINT);
the guard service and guards are killed by their pid files, as a crash would end them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from signal import SIGCONT

import pytest

from lab.host import Host

from .conftest import PREFIXES, OptedIn
from .test_migrate_on_lab import (_assert_source_intact, _migrate_in_background,
                                  _slow_migration_setup, _wait_for_job, assert_copied, migrate,
                                  running_on, start)

pytestmark = pytest.mark.lab

MIGRATE_PID = "/tmp/ncdma-migrate.pid"


def _signal_migrate(host: Host, *signals: str) -> None:
    for name in signals:
        host.run(["sh", "-c", f"kill -{name} $(cat {MIGRATE_PID})"], check=True)


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def _restart_guardd(host: Host) -> None:
    """The guard service started again the way install-host starts it (no systemd)."""
    host.run(["sh", "-c", "setsid sh -c 'echo $$ > /run/ncdma/guardd.pid && exec "
                          f"{PREFIXES[host.name]}/bin/ncdma guardd' </dev/null >/dev/null 2>&1 &"],
             check=True)
    _until(lambda: (host.root_path / "run/ncdma/guard.sock").exists(), "guardd listening")


def test_a_copy_qemu_ends_on_libvirts_one_sigterm_with_no_guard(opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    h1 = opted_in.lab.host("h1")
    try:
        h1.run(["sh", "-c", "kill -9 $(cat /run/ncdma/guardd.pid)"], check=True)
        h1.run(["sh", "-c", "kill -9 $(cut -d' ' -f1 "
                            f"/run/ncdma/domains/{opted_in.uuid}/guard.pid)"], check=True)
        # libvirt's SIGTERM, and no SIGKILL after it: a QEMU still waiting in exit_group
        # when libvirt's grace runs out makes this fail
        done = h1.virsh("destroy", "--graceful", opted_in.name, check=False)
        assert done.returncode == 0, done.stderr
        assert opted_in.state("h1") == "shut off"
    finally:
        h1.run(["rm", "-f", "/run/ncdma/guard.sock"])
        _restart_guardd(h1)


def test_two_migrations_of_one_vm_at_once(opted_in: OptedIn) -> None:
    _slow_migration_setup(opted_in)
    first = _migrate_in_background(opted_in, "--bandwidth", "1")
    _wait_for_job(opted_in)
    _, stderr = migrate(opted_in, "h1", "h2", expect=1)
    assert "is already being migrated" in stderr and "Traceback" not in stderr
    stdout, first_stderr = first.communicate(timeout=120)
    assert first.returncode == 0, first_stderr
    assert_copied(json.loads(stdout), opted_in.enforce)
    assert running_on(opted_in) == ["h2"]


def test_ctrl_c_after_libvirt_can_no_longer_stop_the_migration(opted_in: OptedIn) -> None:
    """--p2p: the source's libvirtd finishes the migration while `ncdma migrate` is stopped;
    Ctrl-C then comes too late to abort: the VM has moved, the copy must still be made, and
    `ncdma migrate` must end (the generous bound below only detects a hang)."""
    _slow_migration_setup(opted_in)
    h1 = opted_in.lab.host("h1")
    migration = _migrate_in_background(opted_in, "--bandwidth", "1", "--p2p")
    _wait_for_job(opted_in)
    _signal_migrate(h1, "STOP")
    try:
        _until(lambda: opted_in.state("h1") == "shut off" and opted_in.state("h2") == "paused",
               "libvirt completed the migration", timeout=180)
    finally:
        _signal_migrate(h1, "INT", "CONT")
        # nsenter (how the lab runs a command in h1) stops itself when its child stops, and
        # waits for a SIGCONT of its own before it passes one on and can reap the child
        os.kill(migration.pid, SIGCONT)
    try:
        stdout, stderr = migration.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        migration.kill()
        raise AssertionError("`ncdma migrate` never ended after the late Ctrl-C") from None
    assert migration.returncode == 0, stderr
    summary = json.loads(stdout)
    assert_copied(summary, opted_in.enforce)
    assert any("could no longer be stopped" in note for note in summary["notes"])
    assert running_on(opted_in) == ["h2"]


@pytest.mark.parametrize("signal", ["TERM", "HUP"])
def test_a_signal_aborts_the_migration_and_undoes_the_timeout_pause(opted_in: OptedIn,
                                                                    signal: str) -> None:
    _slow_migration_setup(opted_in)
    migration = _migrate_in_background(opted_in, "--bandwidth", "1", "--timeout", "1")
    _wait_for_job(opted_in)
    _until(lambda: opted_in.state("h1") == "paused", "--timeout paused the source")
    _signal_migrate(opted_in.lab.host("h1"), signal)
    try:
        stdout, stderr = migration.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        migration.kill()
        raise
    assert migration.returncode == 1, stderr
    assert "interrupted: migration aborted" in stderr and "Traceback" not in stderr
    assert f"{opted_in.name} keeps running on this host with its tags" in stderr
    assert json.loads(stdout)["outcome"] == "failed"
    _assert_source_intact(opted_in)


def test_a_domain_locked_on_the_destination_is_not_migrated_there(opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    h2 = opted_in.lab.host("h2")
    holder = subprocess.Popen(h2.nsenter_argv([f"{PREFIXES['h2']}/bin/ncdma", "peer", "lock",
                                               opted_in.uuid]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and '"locked": true' in holder.stdout.readline()
        _, stderr = migrate(opted_in, "h1", "h2", expect=1)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    assert "is already being migrated" in stderr and "Traceback" not in stderr
    _assert_source_intact(opted_in)
