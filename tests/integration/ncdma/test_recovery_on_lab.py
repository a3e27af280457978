"""A copy migration left paused on the destination, and `ncdma migrate --finish` (issue 13,
items 3 and 6), on the lab.

The source's capture at QEMU's exit is made slow (the guard's ``capture:slow`` fault point)
or impossible (no guard can start: the keeper answers alone), or `ncdma migrate` is killed
after libvirt's switchover: each leaves the domain paused on h2. `--finish` on h1 then
completes the migration from the capture kept on h1, or refuses with the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from signal import SIGCONT
from typing import Any

import pytest

from lab.host import Host

from .conftest import PREFIXES, OptedIn
from .test_migrate_interruptions import _restart_guardd, _signal_migrate, _until
from .test_migrate_on_lab import (VRAM, _migrate_in_background, _slow_migration_setup,
                                  _wait_for_job, migrate, running_on, start,
                                  tagged_slots)

pytestmark = pytest.mark.lab

FAULT = "/run/ncdma/fault"


def _kill_guardd(host: Host) -> None:
    host.run(["sh", "-c", "kill -9 $(cat /run/ncdma/guardd.pid)"], check=True)
    host.run(["rm", "-f", "/run/ncdma/guard.sock"], check=True)


@pytest.fixture
def faulty_h1(opted_in: OptedIn) -> Iterator[Host]:
    """h1's guard service restarted with fault injection on (the file FAULT, armed by the
    test); the service as installed again afterwards."""
    h1 = opted_in.lab.host("h1")
    _kill_guardd(h1)
    h1.run(["sh", "-c", "setsid sh -c 'echo $$ > /run/ncdma/guardd.pid && "
                        f"NCDMA_FAULT_FILE={FAULT} exec {PREFIXES['h1']}/bin/ncdma guardd' "
                        "</dev/null >/dev/null 2>&1 &"], check=True)
    _until(lambda: (h1.root_path / "run/ncdma/guard.sock").exists(), "guardd listening")
    yield h1
    h1.run(["rm", "-f", FAULT])
    _kill_guardd(h1)
    _restart_guardd(h1)


def _finish(domain: OptedIn, *names: str, expect: int) -> tuple[dict[str, Any] | None, str]:
    """`ncdma migrate --finish` on h1: its JSON summary (None when refused before one) and
    stderr."""
    done = domain.ncdma("h1", "migrate", "--finish", *(names or (domain.name,)), "--json")
    assert done.returncode == expect, done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    return (json.loads(done.stdout) if done.stdout else None), done.stderr


def _left_paused(domain: OptedIn, stderr: str) -> None:
    """The message, and both sides, of a migration left paused on h2."""
    assert f"{domain.name} is PAUSED on" in stderr and \
        f"`ncdma migrate --finish {domain.name}`" in stderr, stderr
    assert domain.state("h2") == "paused" and domain.state("h1") == "shut off"


def _not_copied(domain: OptedIn, summary: dict[str, Any], stderr: str, reason: str) -> None:
    assert summary["outcome"] == "failed"
    assert [slot["action"] for slot in summary["slots"]] == ["not copied"]
    assert reason in stderr and "not copied" in stderr, stderr
    _left_paused(domain, stderr)
    _, refusal = _finish(domain, expect=1)
    assert f"{domain.name}'s capture failed: {reason}" in refusal


def test_a_slow_capture_ends_at_its_deadline_and_the_migration_is_not_copied(
        opted_in: OptedIn, faulty_h1: Host) -> None:
    start(opted_in, "copy")
    faulty_h1.run(["sh", "-c", f"echo capture:slow > {FAULT}"], check=True)
    summary, stderr = migrate(opted_in, "h1", "h2", expect=1)
    _not_copied(opted_in, summary, stderr, "the capture's deadline (8 s after QEMU's exit "
                                           "began) passed after 0 of 1 slots")


def test_a_copy_qemu_with_no_guard_able_to_capture_exits_not_copied(
        opted_in: OptedIn, faulty_h1: Host) -> None:
    _slow_migration_setup(opted_in)
    migration = _migrate_in_background(opted_in, "--bandwidth", "1")
    _wait_for_job(opted_in)
    faulty_h1.run(["sh", "-c", f"echo guard-start > {FAULT}; kill -9 $(cut -d' ' -f1 "
                               f"/run/ncdma/domains/{opted_in.uuid}/guard.pid)"], check=True)
    stdout, stderr = migration.communicate(timeout=120)
    assert migration.returncode == 1, stderr
    _not_copied(opted_in, json.loads(stdout), stderr, "no guard could run at QEMU's exit")


def test_finish_completes_a_copy_migration_left_paused(opted_in: OptedIn) -> None:
    """`ncdma migrate` killed after libvirt's switchover (the capture made at the source's
    exit): --finish refuses a damaged capture, another domain and a destination that is not
    paused, then completes the migration."""
    _slow_migration_setup(opted_in)
    h1 = opted_in.lab.host("h1")
    kept = h1.root_path / f"run/ncdma/migrations/{opted_in.uuid}"
    migration = _migrate_in_background(opted_in, "--bandwidth", "1", "--p2p")
    _wait_for_job(opted_in)
    _signal_migrate(h1, "STOP")
    try:
        _until(lambda: (kept / "captured.json").exists() and opted_in.state("h2") == "paused",
               "libvirt completed the migration and the source's guard captured", timeout=180)
    finally:
        _signal_migrate(h1, "KILL")
        os.kill(migration.pid, SIGCONT)  # nsenter stopped itself with its child (see above)
        migration.communicate(timeout=60)
    [slot] = json.loads((kept / "captured.json").read_text())["slots"]
    assert opted_in.state("h2") == "paused"

    _, refusal = _finish(opted_in, "t-no-such-domain", expect=1)
    assert "nothing is kept on this host for t-no-such-domain" in refusal
    data = kept / slot["file"]
    good = data.read_bytes()
    data.write_bytes(bytes([good[0] ^ 1]) + good[1:])
    _, refusal = _finish(opted_in, expect=1)
    assert f"slot {slot['gpa']:#x}'s kept content does not match its capture" in refusal
    data.write_bytes(good)
    h2 = opted_in.lab.host("h2")
    h2.virsh("resume", opted_in.name)
    _, refusal = _finish(opted_in, expect=1)
    assert "is not paused (running)" in refusal
    h2.virsh("suspend", opted_in.name)

    summary, stderr = _finish(opted_in, opted_in.uuid, expect=0)
    assert summary is not None and summary["outcome"] == "migrated", stderr
    [entry] = summary["slots"]
    assert entry["action"] == "copied" and entry["owner"].endswith(f"vram ({VRAM})")
    assert entry["sha256_source"] == entry["sha256_destination"] == slot["sha256"]
    assert entry["destination"] == {"action": "tag", "flag_set": opted_in.enforce}
    assert entry["destination_paused_at_verify"] is True
    assert running_on(opted_in) == ["h2"] and tagged_slots(opted_in, "h2") == 1
    assert not kept.exists()
    _, refusal = _finish(opted_in, expect=1)
    assert "nothing is kept on this host" in refusal
