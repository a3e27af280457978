"""Attacks on the root guard service by a local user and by QEMU's user (issue 12).

Every attacker here runs as an unprivileged user (uid 65534 through setpriv) and talks to
the real service over its real socket; the victims are real processes.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncdma.model.verdict import Mode
from lab.guarded import NOBODY, GuardedHost, as_user, bystander

ATTACKER = [*as_user(*NOBODY), "/usr/bin/python3", str(Path(__file__).with_name("attacker.py"))]
FAKE_QEMU = Path(__file__).with_name("fake_qemu.py")
# The victim's 32 bytes, as the guard would parse them (slot id = the first four bytes)
SECRET = bytes(range(1, 33))
SECRET_SLOT = int.from_bytes(SECRET[:4], "little")


def attack(*args: str, timeout: float = 60) -> list[dict]:
    """Run the attacker tool as nobody; the JSON lines it printed."""
    done = subprocess.run([*ATTACKER, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def victim() -> Iterator[tuple[int, int]]:
    """A root process holding SECRET at an address it prints: (pid, address)."""
    with bystander(f"buffer = ctypes.create_string_buffer({SECRET!r}, 32)\n"
                   "address = ctypes.addressof(buffer)") as found:
        yield found


@pytest.fixture
def running_vm(host: GuardedHost) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A guarded QEMU (paused at its first instruction), its guard attached and journaling."""
    domain = host.plan(Mode.AUDIT)
    qemu = subprocess.Popen(host.wrapper_argv(domain, "-m", "128", "-device",
                                              "virtio-vga,id=video0", "-S"),
                            env=host.env, stderr=subprocess.PIPE)
    journal = host.settings.domain_dir(domain) / "slots.json"
    deadline = time.monotonic() + 30
    while not journal.exists():
        assert qemu.poll() is None and time.monotonic() < deadline, "the guard never journaled"
        time.sleep(0.1)
    try:
        yield domain, qemu
    finally:
        qemu.kill()
        qemu.wait()


def _journals(host: GuardedHost) -> list[dict]:
    found = []
    for path in (host.settings.state_dir / "domains").glob("*/slots.json"):
        found.append(json.loads(path.read_text()))
    return found


def test_a_local_user_cannot_make_the_guard_read_another_process(host, victim) -> None:
    """Own seccomp listener + another process's pid: the guard must not touch that process."""
    pid, address = victim
    domain = host.plan(Mode.ENFORCE)  # a VM about to start: its plan exists
    answer, ioctl = attack("forge", str(host.settings.guard_socket), domain, str(pid),
                           hex(address))
    assert answer["answer"]["ok"] is False, answer
    time.sleep(1)  # a guard, if one was started, has journaled the fake ioctl by now
    leaked = [slot for journal in _journals(host) for slot in journal.get("slots", [])
              if slot["slot"] == SECRET_SLOT]
    assert not leaked, f"the guard read the victim's memory: {leaked}"
    assert ioctl["ioctl_errno"] != 0


@pytest.mark.parametrize(("user", "why"), [((0, 0), "names QEMU's user"),
                                           (NOBODY, "is not the wrapper")])
def test_a_caller_asking_for_itself_must_be_the_planned_wrapper(host, user, why) -> None:
    """The pid is the caller's own: then its uid/gid must be the plan's QEMU user, and it
    must run the wrapper the plan names for that domain (here it runs the attacker)."""
    domain = host.plan(Mode.AUDIT, user=user)
    answer, _ = attack("forge", str(host.settings.guard_socket), domain, "self", "0x1000")
    assert answer["answer"]["ok"] is False and why in answer["answer"]["error"], answer
    assert "attached" not in host.log()


def test_a_local_user_cannot_take_over_a_running_vm(host, running_vm) -> None:
    """The attach of a running domain, with its real QEMU pid: refused, nothing changes."""
    domain, qemu = running_vm
    directory = host.settings.domain_dir(domain)
    before = {name: (directory / name).read_bytes() for name in ("guard.pid",)}
    qmp_owner = (directory / "qmp").stat().st_uid
    answer, _ = attack("forge", str(host.settings.guard_socket), domain, str(qemu.pid), "0x1000")
    assert answer["answer"]["ok"] is False, answer
    assert (directory / "qmp").stat().st_uid == qmp_owner, "qmp/ was chowned to the attacker"
    assert {name: (directory / name).read_bytes() for name in before} == before
    assert host.journal(domain)["qemu_pid"] == qemu.pid


def test_the_guard_never_chmods_through_a_symlink_qemus_user_planted(host, short_tmp) -> None:
    """QEMU (as its own user) swaps qmp.sock for a symlink once the guard connected."""
    target = short_tmp / "root-owned"
    target.write_text("root's file\n")
    target.chmod(0o644)
    fake = short_tmp / "fake-qemu"
    shutil.copy(FAKE_QEMU, fake)
    fake.chmod(0o755)
    domain = host.plan(Mode.AUDIT, emulator=str(fake), user=NOBODY)
    done = subprocess.run([*as_user(*NOBODY), *host.wrapper_argv(domain)],
                          env={**host.env, "FAKE_QEMU_SWAP_TO": str(target)},
                          capture_output=True, text=True, timeout=60)
    assert "swapped" in done.stdout, done.stdout + done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o644, "the guard chmodded root's file"


def test_state_files_are_root_only(host, running_vm) -> None:
    domain, _ = running_vm
    directory = host.settings.domain_dir(domain)
    deadline = time.monotonic() + 20
    while not (directory / "flatview.json").exists():
        assert time.monotonic() < deadline, "the guard never saved the flat view"
        time.sleep(0.1)
    for name in ("slots.json", "flatview.json", "guard.pid", "pending", "plan.json"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    for name in ("slots.json", "flatview.json", "guard.pid", "plan.json"):
        done = subprocess.run([*as_user(*NOBODY), "cat", str(directory / name)],
                              capture_output=True, timeout=30)
        assert done.returncode != 0, f"another local user reads {name}"
    listing = subprocess.run([*as_user(*NOBODY), "ls", str(directory.parent)],
                             capture_output=True, text=True, timeout=30)
    assert domain not in listing.stdout, "another local user lists the running domains"


def test_malformed_messages_get_refusals_and_the_service_lives(host, tmp_path) -> None:
    socket_path = str(host.settings.guard_socket)
    for message in (b"[]", b'{"uuid":"x","pid":[]}', b'{"uuid":[],"pid":1}', b"null",
                    b'{"uuid":"x","pid":1,"listener_fd":"3"}', b"\xff\xfe"):
        answer, = attack("send", socket_path, message.hex(), "fd")
        assert answer["answer"].get("ok") is False, (message, answer)
        assert host.service.poll() is None, f"{message!r} killed the service"
    _assert_a_real_attach_works(host, tmp_path)


def test_thousands_of_random_messages_then_a_real_attach(host, tmp_path) -> None:
    summary, = attack("fuzz", str(host.settings.guard_socket), "3000", "12", timeout=600)
    assert host.service.poll() is None, "the fuzzing killed the service"
    assert summary["answers"].get("answered", 0) > 0
    _assert_a_real_attach_works(host, tmp_path)


def test_idle_connections_do_not_delay_another_vms_attach(host, tmp_path) -> None:
    """Bounded attach (issue 13): three idle connections held open the whole time."""
    idle = subprocess.Popen([*ATTACKER, "idle", str(host.settings.guard_socket), "3", "60"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # the idle connections are open before the VM starts
        _assert_a_real_attach_works(host, tmp_path)
    finally:
        idle.kill()
        idle.wait()
    assert "slots stay untouched" not in host.log(), "a guard was left without QMP"


def _assert_a_real_attach_works(host: GuardedHost, tmp_path: Path) -> None:
    from lab.guests.build import build_guest, exit_code

    image = build_guest("bartoggle", tmp_path, TOGGLES=20)
    domain = host.plan(Mode.AUDIT)
    done = subprocess.run(host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga",
                                            "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                                            "-bios", str(image)),
                          env=host.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == exit_code("STATUS_TOGGLE_DONE"), done.stderr
    assert "ncdma-qemu:" not in done.stderr, done.stderr
    assert host.journal(domain)["counts"]["delete"] >= 20


def test_victim_fixture_holds_the_secret(victim) -> None:
    """The victim really holds SECRET where it says (so the attack test can fail)."""
    pid, address = victim
    with open(f"/proc/{pid}/mem", "rb") as memory:
        memory.seek(address)
        assert memory.read(32) == SECRET


def test_a_late_attach_leaves_no_guard_and_the_wrapper_says_so(host) -> None:
    """Bounded attach (issue 13): a service that answers after the wrapper's bound starts
    no guard (it would have no QMP), and the wrapper says QEMU did not start."""
    domain = host.plan(Mode.AUDIT)
    os.kill(host.service.pid, signal.SIGSTOP)
    try:
        qemu = subprocess.Popen(host.wrapper_argv(domain, "-m", "128", "-S"), env=host.env,
                                stderr=subprocess.PIPE, text=True)
        _, stderr = qemu.communicate(timeout=60)
    finally:
        os.kill(host.service.pid, signal.SIGCONT)
    assert qemu.returncode == 1, stderr
    assert "QEMU not started: the guard service did not attach its guard" in stderr
    assert "runs unguarded" not in stderr
    deadline = time.monotonic() + 30  # the resumed service handles the stale request
    while not any(word in host.log() for word in ("gave up before", "refused pid")):
        assert time.monotonic() < deadline, host.log()
        time.sleep(0.2)
    assert "attached, guard" not in host.log()
    assert not (host.settings.domain_dir(domain) / "guard.pid").exists()
