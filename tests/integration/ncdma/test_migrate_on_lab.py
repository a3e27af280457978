"""`ncdma migrate` on the lab: real libvirt live migrations between h1 and h2.

Each test runs in audit mode (this kernel rejects the flag: the vram slot is tagged, the guard
selected it, without the flag set; migration treats it as tagged all the same) and in enforce
mode with the lab's stand-in flag (the flag set on the tagged slot at the source, and on the
destination's new slot before the guest resumes there).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from lab import config

from .conftest import OptedIn, PREFIXES

pytestmark = pytest.mark.lab

VRAM = "0000:00:02.0/vga.vram"
GUESTMEM = f"{config.REPO_MOUNT}/tests/integration/ncdma/guestmem.py"
MiB = 1 << 20


def migrate(domain: OptedIn, source: str, dest: str, *options: str,
            expect: int = 0) -> tuple[dict[str, Any], str]:
    """`ncdma migrate --json` inside ``source``: the summary and stderr."""
    uri = f"qemu+ssh://{domain.lab.host(dest).address}/system"
    done = domain.ncdma(source, "migrate", domain.name, uri, "--live", "--json", *options)
    assert done.returncode == expect, done.stderr + done.stdout
    return json.loads(done.stdout), done.stderr


def guestmem(domain: OptedIn, host: str, *args: object) -> dict[str, Any]:
    done = domain.lab.host(host).run(["python3", GUESTMEM, args[0], domain.name,
                                      *map(str, args[1:])], timeout=90)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def start(domain: OptedIn, migration: str, host: str = "h1") -> None:
    domain.define(host)
    domain.enable(host, "--bars", "vram", "--migration", migration)
    domain.lab.host(host).virsh("start", domain.name)
    deadline = time.monotonic() + 20
    while tagged_slots(domain, host) != 1:
        assert time.monotonic() < deadline, "the vram slot was never tagged"
        time.sleep(0.2)


def tagged_slots(domain: OptedIn, host: str) -> int:
    """How many slots the guard on ``host`` has tagged (or would, in audit mode)."""
    done = domain.ncdma(host, "status", domain.name, "--json")
    journal = json.loads(done.stdout)["journal"] if done.stdout else None
    return [slot["decision"] for slot in (journal or {}).get("slots", [])].count("tag")


def running_on(domain: OptedIn) -> list[str]:
    return [name for name in ("h1", "h2") if domain.state(name) == "running"]


def assert_copied(summary: dict[str, Any], enforce: bool) -> None:
    assert summary["outcome"] == "migrated" and summary["strategy"] == "copy"
    [slot] = summary["slots"]
    assert slot["owner"].endswith(f"vram ({VRAM})") and slot["action"] == "copied"
    assert slot["sha256_source"] == slot["sha256_destination"]
    assert slot["flag_set_source"] is enforce
    # the destination's guard had tagged the new slot while the guest was still paused
    # (enforce: with the flag set)
    assert slot["destination"] == {"action": "tag", "flag_set": enforce}
    assert slot["destination_paused_at_verify"] is True
    assert [phase["phase"] for phase in summary["phases"]] == [
        "preflight", "memory", "tagged slots", "verify", "switchover"]


def test_copy_there_and_back(opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    there, progress = migrate(opted_in, "h1", "h2", "--verbose")
    assert_copied(there, opted_in.enforce)
    assert running_on(opted_in) == ["h2"]
    assert tagged_slots(opted_in, "h2") == 1
    back, _ = migrate(opted_in, "h2", "h1", "--p2p")
    assert_copied(back, opted_in.enforce)
    assert running_on(opted_in) == ["h1"]
    print(f"h1->h2 {there['phases']}, downtime {there['downtime_ms']}")


def test_copy_carries_what_a_device_wrote_that_virsh_migrate_loses(opted_in: OptedIn) -> None:
    """The problem made visible, and its fix, on the same VM and the same writes.

    Patterns go into guest RAM and vram while the guest is paused; then, while a
    bandwidth-limited live migration is past the vram range, a new pattern is written
    into vram through QEMU's memory, as a non-snooping device would (KVM's dirty log
    does not see it). virsh arrives with the old vram (on a domain whose owner opted into
    plain migrations: migration='any'; copy refuses it); ncdma migrate with the new one.
    """
    ram = ("pc.ram", 64 * MiB, MiB)
    vram = (VRAM, 4 * MiB, MiB)
    results = {}
    for tool in ("virsh", "ncdma"):
        opted_in.remove()
        start(opted_in, "any" if tool == "virsh" else "copy")
        host = opted_in.lab.host("h1")
        host.virsh("suspend", opted_in.name)
        written_ram = guestmem(opted_in, "h1", "write", *ram, 1)["sha256"]
        old_vram = guestmem(opted_in, "h1", "write", *vram, 2)["sha256"]
        host.virsh("resume", opted_in.name)
        writer = subprocess.Popen(host.nsenter_argv(
            ["python3", GUESTMEM, "write-when-sent", opted_in.name, *map(str, vram), "3", "3"]),
            stdout=subprocess.PIPE, text=True)
        if tool == "virsh":
            host.virsh("migrate", "--live", "--bandwidth", "1", opted_in.name,
                       f"qemu+ssh://{opted_in.lab.host('h2').address}/system")
        else:
            summary, _ = migrate(opted_in, "h1", "h2", "--bandwidth", "1")
            assert_copied(summary, opted_in.enforce)
        new_vram = json.loads(writer.communicate(timeout=60)[0])["sha256"]
        assert running_on(opted_in) == ["h2"]
        results[tool] = {"ram": guestmem(opted_in, "h2", "sha", *ram)["sha256"],
                         "vram": guestmem(opted_in, "h2", "sha", *vram)["sha256"],
                         "old": old_vram, "new": new_vram}
        assert results[tool]["ram"] == written_ram, f"{tool}: guest RAM differs"
    print(json.dumps(results, indent=1))
    assert results["virsh"]["vram"] == results["virsh"]["old"] != results["virsh"]["new"], \
        "virsh migrate should arrive with the stale vram (the device's write is lost)"
    assert results["ncdma"]["vram"] == results["ncdma"]["new"], \
        "ncdma migrate must arrive with the device's last write"


@pytest.mark.parametrize("policy, words", [
    ("refuse", ["migration='refuse'", "1 tagged slot", VRAM, "--migration copy"]),
    ("skip", ["migration='skip'", "in QEMU's RAM stream", VRAM, "migration='copy'"]),
])
def test_policies_that_refuse_leave_the_source_running(opted_in: OptedIn, policy: str,
                                                       words: list[str]) -> None:
    start(opted_in, policy)
    summary, stderr = migrate(opted_in, "h1", "h2", expect=1)
    for word in words:
        assert word in stderr
    assert summary["outcome"] == "failed" and summary["phases"][-1]["phase"] == "preflight"
    assert running_on(opted_in) == ["h1"]
    assert opted_in.lab.host("h2").virsh("list", "--all").stdout.count(opted_in.name) == 0


def test_dry_run_changes_nothing(opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    done = opted_in.ncdma("h1", "migrate", opted_in.name,
                          f"qemu+ssh://{opted_in.lab.host('h2').address}/system", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry-run (copy)" in done.stdout and "would be copied" in done.stdout
    assert running_on(opted_in) == ["h1"]


def test_a_domain_without_ncdma_migrates_as_with_virsh(opted_in: OptedIn) -> None:
    opted_in.define("h1")
    opted_in.lab.host("h1").virsh("start", opted_in.name)
    summary, _ = migrate(opted_in, "h1", "h2")
    assert summary["strategy"] == "plain" and summary["outcome"] == "migrated"
    assert "the domain does not opt in to ncdma" in summary["notes"]
    assert running_on(opted_in) == ["h2"]


def test_a_destination_without_the_hook_is_refused_before_anything_moves(
        opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    h2 = opted_in.lab.host("h2")
    h2.run(["mv", "/etc/libvirt/hooks/qemu.d/50-ncdma", "/tmp/50-ncdma"], check=True)
    try:
        _, stderr = migrate(opted_in, "h1", "h2", expect=1)
    finally:
        h2.run(["mv", "/tmp/50-ncdma", "/etc/libvirt/hooks/qemu.d/50-ncdma"], check=True)
    assert "the destination cannot honor its policy" in stderr and "libvirt hook" in stderr
    assert running_on(opted_in) == ["h1"]


def test_an_unreachable_destination_is_refused_in_the_preflight(opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    done = opted_in.ncdma("h1", "migrate", opted_in.name, "qemu+ssh://127.0.0.99/system",
                          "--live")
    assert done.returncode == 1
    assert "cannot reach 127.0.0.99 over SSH" in done.stderr and "Traceback" not in done.stderr
    assert running_on(opted_in) == ["h1"]


def _migrate_in_background(domain: OptedIn, *options: str) -> subprocess.Popen[str]:
    host = domain.lab.host("h1")
    uri = f"qemu+ssh://{domain.lab.host('h2').address}/system"
    command = (f"echo $$ > /tmp/ncdma-migrate.pid; exec {PREFIXES['h1']}/bin/ncdma migrate "
               f"{domain.name} {uri} --live --json {' '.join(options)}")
    return subprocess.Popen(host.nsenter_argv(["sh", "-c", command]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_job(domain: OptedIn) -> None:
    deadline = time.monotonic() + 20
    while "Memory remaining" not in domain.lab.host("h1").virsh(
            "domjobinfo", domain.name, check=False).stdout:
        assert time.monotonic() < deadline, "the migration job never started"
        time.sleep(0.05)


def _assert_source_intact(domain: OptedIn) -> None:
    assert running_on(domain) == ["h1"]
    status = json.loads(domain.ncdma("h1", "status", domain.name, "--json").stdout)
    assert status["guard"]["alive"] and tagged_slots(domain, "h1") == 1
    assert domain.lab.host("h2").virsh("list", "--all").stdout.count(domain.name) == 0
    assert not (domain.lab.host("h1").root_path / f"run/ncdma/migrations/{domain.uuid}").exists()


def _slow_migration_setup(domain: OptedIn) -> None:
    """Enough non-zero memory that a 1 MiB/s migration lasts a few seconds."""
    start(domain, "copy")
    guestmem(domain, "h1", "write", "pc.ram", 64 * MiB, 4 * MiB, 7)


@pytest.mark.parametrize("failure", ["ctrl-c", "destination qemu killed"])
def test_failures_mid_way_leave_the_source_running_with_its_tags(opted_in: OptedIn,
                                                                 failure: str) -> None:
    _slow_migration_setup(opted_in)
    migration = _migrate_in_background(opted_in, "--bandwidth", "1")
    _wait_for_job(opted_in)
    if failure == "ctrl-c":
        opted_in.lab.host("h1").run(["sh", "-c", "kill -INT $(cat /tmp/ncdma-migrate.pid)"])
    else:
        opted_in.lab.host("h2").run(["pkill", "-9", "-f", f"guest={opted_in.name}"])
    stdout, stderr = migration.communicate(timeout=90)
    assert migration.returncode == 1, stderr
    assert f"{opted_in.name} keeps running on this host with its tags" in stderr
    if failure == "ctrl-c":
        assert "interrupted: migration aborted" in stderr
    assert json.loads(stdout)["outcome"] == "failed"
    _assert_source_intact(opted_in)


def test_a_blocked_migration_port_fails_cleanly(opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    h2 = opted_in.lab.host("h2")
    port = h2.spec.migration_ports[1]
    # holds the port until its stdin closes (killing nsenter would leave it running)
    blocker = subprocess.Popen(h2.nsenter_argv(
        ["python3", "-c", f"import socket,sys; s=socket.socket(); s.bind(('{h2.address}', "
                          f"{port})); s.listen(); print('ok', flush=True); sys.stdin.read()"]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert blocker.stdout is not None and blocker.stdout.readline().strip() == "ok"
        _, stderr = migrate(opted_in, "h1", "h2", "--migrateuri", f"tcp://{h2.address}:{port}",
                            "--listen-address", h2.address, expect=1)
    finally:
        assert blocker.stdin is not None
        blocker.stdin.close()
        blocker.wait(30)
    assert "keeps running on this host with its tags" in stderr
    _assert_source_intact(opted_in)


def test_timeout_suspends_the_source_like_virsh_and_the_migration_completes(
        opted_in: OptedIn) -> None:
    _slow_migration_setup(opted_in)
    summary, _ = migrate(opted_in, "h1", "h2", "--bandwidth", "1", "--timeout", "1")
    assert_copied(summary, opted_in.enforce)
    assert running_on(opted_in) == ["h2"]


def test_a_source_connection_to_another_host_is_refused_naming_it(opted_in: OptedIn) -> None:
    start(opted_in, "refuse", host="h2")
    h2 = opted_in.lab.host("h2")
    done = opted_in.ncdma("h1", "migrate", "-c", f"qemu+ssh://{h2.address}/system", opted_in.name,
                          f"qemu+ssh://{opted_in.lab.host('h1').address}/system", "--live")
    assert done.returncode == 1
    assert "the source connection names host h2, not this host (h1)" in done.stderr
    assert "run `ncdma migrate` on h2" in done.stderr and len(done.stderr.splitlines()) == 1
    assert running_on(opted_in) == ["h2"]
