"""The guard on this machine's QEMU 7.2 under KVM, attached by the wrapper through the service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ncdma.model.verdict import Mode
from lab.guarded import GuardedHost
from lab.guests.build import build_guest, exit_code

ISA_EXIT = ("-device", "isa-debug-exit,iobase=0x501,iosize=2")


def test_guest_runs_to_completion_through_the_guard(host, tmp_path) -> None:
    image = build_guest("bartoggle", tmp_path, TOGGLES=50)
    domain = host.plan(Mode.AUDIT)
    done = subprocess.run(host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga",
                                            *ISA_EXIT, "-bios", str(image)),
                          env=host.env, capture_output=True, timeout=60)
    assert done.returncode == exit_code("STATUS_TOGGLE_DONE"), done.stderr
    journal = host.journal(domain)
    assert journal["mode"] == "audit"
    # every create of the vram slot went through the guard, and every delete
    assert journal["counts"]["delete"] >= 50
    assert "attached, keeper" in host.log()


def test_the_guard_killed_20_times_during_churn_loses_nothing(host, tmp_path) -> None:
    image = build_guest("bartoggle", tmp_path, TOGGLES=8000)
    domain = host.plan(Mode.AUDIT)
    qemu = subprocess.Popen(host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga",
                                              *ISA_EXIT, "-bios", str(image)),
                            env=host.env, stderr=subprocess.PIPE)
    kills = 0
    try:
        deadline = time.monotonic() + 120
        while kills < 20 and qemu.poll() is None and time.monotonic() < deadline:
            pid = host.guard_pid(domain)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.25)
        status = qemu.wait(timeout=120)
    finally:
        if qemu.poll() is None:  # a hung QEMU must not outlive the test
            qemu.kill()
            qemu.wait()
    assert kills == 20, f"QEMU finished after {kills} kills: make the churn longer"
    assert status == exit_code("STATUS_TOGGLE_DONE"), qemu.stderr.read()
    assert host.log().count("died (status -9): a new guard takes over") >= 20
    assert "after taking over" in host.log()


def test_without_the_service_a_required_domain_does_not_start(short_tmp) -> None:
    host = GuardedHost(short_tmp)  # no service running
    domain = host.plan(Mode.AUDIT, require=True)
    done = subprocess.run(host.wrapper_argv(domain, "-m", "128"), env=host.env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "the guard service is not reachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_the_service_an_unrequired_domain_runs_unguarded(short_tmp, tmp_path) -> None:
    host = GuardedHost(short_tmp)
    image = build_guest("bartoggle", tmp_path, TOGGLES=2)
    domain = host.plan(Mode.AUDIT)
    done = subprocess.run(host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga",
                                            *ISA_EXIT, "-bios", str(image)),
                          env=host.env, capture_output=True, text=True, timeout=30)
    assert done.returncode == exit_code("STATUS_TOGGLE_DONE")
    assert "runs unguarded" in done.stderr


def test_without_a_plan_qemu_runs_untouched(host, tmp_path) -> None:
    image = build_guest("bartoggle", tmp_path, TOGGLES=2)
    unplanned = "0b7e2a4c-1f2d-4d7a-9a51-0c3b6f1e2d44"
    done = subprocess.run(host.wrapper_argv(unplanned, "-m", "128", "-device", "virtio-vga",
                                            *ISA_EXIT, "-bios", str(image)),
                          env=host.env, capture_output=True, text=True, timeout=30)
    assert done.returncode == exit_code("STATUS_TOGGLE_DONE") and "ncdma" not in done.stderr
    assert "attached" not in host.log()
    probe = subprocess.run([host.wrapper_argv(unplanned)[0], "-version"], env=host.env,
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0 and "QEMU emulator version" in probe.stdout


def test_enforce_on_this_unpatched_kernel_makes_the_tagged_ioctl_fail_with_einval(
        host, tmp_path) -> None:
    # Forced past the hook (which plans audit here): proof that the flag reaches the kernel.
    # QEMU 7.2 reports no vram host address: the guard learns it from the first mapping
    # (left untouched), so the guest maps vram a second time after HOLD seconds.
    image = build_guest("bartoggle", tmp_path, TOGGLES=1, HOLD=2)
    domain = host.plan(Mode.ENFORCE)
    done = subprocess.run(host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga,id=video0",
                                            *ISA_EXIT, "-bios", str(image)),
                          env=host.env, capture_output=True, text=True, timeout=120)
    assert done.returncode != exit_code("STATUS_TOGGLE_DONE")
    assert "Invalid argument" in done.stderr, done.stderr
    journal = host.journal(domain)
    tagged = [slot for slot in journal["slots"] if slot["flag_set"]]
    assert [(slot["gpa"], slot["size"]) for slot in tagged] == [(0xE0000000, 0x800000)]
    assert tagged[0]["owner"]["kind"] == "vram"
    untouched = [slot for slot in journal["slots"] if not slot["flag_set"]]
    assert untouched and all(slot["gpa"] + slot["size"] <= 128 << 20 or slot["gpa"] >= 0xFFFC0000
                             for slot in untouched), "guest RAM and firmware keep their flags"


def test_audit_mode_journals_the_vram_slot_as_selected_and_changes_nothing(host, tmp_path) -> None:
    image = build_guest("vramfill", tmp_path)  # vram mapped, then its chain-4 alias written
    domain = host.plan(Mode.AUDIT)
    done = subprocess.run(host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga,id=video0",
                                            *ISA_EXIT, "-bios", str(image)),
                          env=host.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == exit_code("STATUS_VRAMFILL_OK"), done.stderr
    journal = host.journal(domain)
    assert journal["counts"]["tag"] > 0 and "keep" not in journal["counts"]
    assert all(not slot["flag_set"] for slot in journal["slots"])
    assert "would be tagged (audit)" in host.log()


def test_a_hostile_guest_putting_vram_over_its_ram_gets_nothing_tagged(host, tmp_path) -> None:
    # Enforce mode on this unpatched kernel: a wrongly tagged slot would make QEMU fail.
    image = build_guest("hostile", tmp_path, STAY=1)
    domain = host.plan(Mode.ENFORCE)
    qemu = subprocess.Popen(host.wrapper_argv(domain, "-m", "128", "-device",
                                              "virtio-vga,id=video0", *ISA_EXIT,
                                              "-bios", str(image)),
                            env=host.env, stderr=subprocess.PIPE)
    try:
        time.sleep(4)  # the guest has placed the BAR and halts; the guard has read the layout
        assert qemu.poll() is None, qemu.stderr.read()
        journal = host.journal(domain)
        assert not [slot for slot in journal["slots"] if slot["flag_set"]]
        assert not [slot for slot in journal["slots"] if slot["size"] == 0x800000]
    finally:
        qemu.kill()
        qemu.wait()


def test_status_shows_the_slots_table_against_the_flat_view(host, tmp_path) -> None:
    domain = host.plan(Mode.AUDIT)
    qemu = subprocess.Popen(host.wrapper_argv(domain, "-m", "128", "-device",
                                              "virtio-vga,id=video0"),
                            env=host.env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = subprocess.run([sys.executable, "-m", "ncdma", "status", domain], env=host.env,
                                  capture_output=True, text=True, timeout=30)
            if "every journaled slot matches" in done.stdout:
                break
            time.sleep(0.5)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "guard: alive" in done.stdout and "pc.ram" in done.stdout
        assert "mode: audit" in done.stdout
    finally:
        qemu.kill()
        qemu.wait()
    gone = subprocess.run([sys.executable, "-m", "ncdma", "status", "no-such-vm"], env=host.env,
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1 and "no domain 'no-such-vm' is running with ncdma" in gone.stderr
