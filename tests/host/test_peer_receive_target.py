"""`ncdma peer receive` writes only into the paused incoming QEMU of the named domain (issue 12).

The journal here names a process that is not that QEMU (as a forged attach left it on
acbc127): a root process with a shared mapping at the slot's address. The command line
must refuse, and the process's memory must stay as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ncdma.model.verdict import Mode
from lab.guarded import GuardedHost, bystander

SLOT_SIZE = 4096
GPA = 0xE0000000


@pytest.fixture
def shared_page() -> Iterator[tuple[int, int]]:
    """A root process with a shared page (as QEMU's device RAM would be): (pid, address)."""
    with bystander("page = mmap.mmap(-1, 4096)\npage.write(b'B' * 4096)\n"
                   "address = ctypes.addressof(ctypes.c_char.from_buffer(page))") as found:
        yield found


def _memory(pid: int, address: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb") as memory:
        memory.seek(address)
        return memory.read(SLOT_SIZE)


def test_receive_refuses_a_process_that_is_not_the_incoming_qemu(short_tmp, shared_page) -> None:
    host = GuardedHost(short_tmp)  # the destination's state; no service needed
    pid, address = shared_page
    domain = host.plan(Mode.AUDIT)
    journal = {"schema_version": 1, "mode": "audit", "flag": 8, "qemu_pid": pid,
               "slots": [{"slot": 3, "gpa": GPA, "size": SLOT_SIZE, "hva": address, "flags": 0,
                          "action": "tag", "reason": "", "owner": "video0 vram",
                          "flag_set": False}]}
    (host.settings.domain_dir(domain) / "slots.json").write_text(json.dumps(journal))
    stream = json.dumps({"slots": [{"gpa": GPA, "size": SLOT_SIZE}]}).encode() + b"\n"
    done = subprocess.run([sys.executable, "-m", "ncdma", "peer", "receive", domain],
                          input=stream + b"A" * SLOT_SIZE, env=host.env, capture_output=True,
                          timeout=60)
    assert _memory(pid, address) == b"B" * SLOT_SIZE, "peer receive wrote into a bystander"
    assert done.returncode == 1, done.stdout
    assert b"incoming" in done.stderr and b"Traceback" not in done.stderr, done.stderr


def _waiting_on_stdin(process: subprocess.Popen[bytes]) -> bool:
    """True once ``process`` is blocked reading its stdin (fd 0), False if it ended."""
    for _ in range(600):
        if process.poll() is not None:
            return False
        try:
            fields = open(f"/proc/{process.pid}/syscall").read().split()
        except OSError:
            return False
        if fields[:2] == ["0", "0x0"]:
            return True
        time.sleep(0.05)
    return False


def test_a_receiver_started_before_the_migration_checks_when_the_slots_arrive(
        short_tmp, shared_page) -> None:
    """The source starts `ncdma peer receive` before libvirt's migration (issue 17: its
    start-up is then out of the downtime). It waits for the stream first; the journal and
    the incoming QEMU are checked once the header arrives, against what is there then."""
    host = GuardedHost(short_tmp)
    pid, address = shared_page
    domain = host.plan(Mode.AUDIT)
    with subprocess.Popen([sys.executable, "-m", "ncdma", "peer", "receive", domain],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=host.env) as receiver:
        assert _waiting_on_stdin(receiver), "peer receive did not wait for the stream"
        journal = {"schema_version": 1, "mode": "audit", "flag": 8, "qemu_pid": pid,
                   "slots": [{"slot": 3, "gpa": GPA, "size": SLOT_SIZE, "hva": address,
                              "flags": 0, "action": "tag", "reason": "", "owner": "video0 vram",
                              "flag_set": False}]}
        (host.settings.domain_dir(domain) / "slots.json").write_text(json.dumps(journal))
        stream = json.dumps({"slots": [{"gpa": GPA, "size": SLOT_SIZE}]}).encode() + b"\n"
        out, err = receiver.communicate(stream + b"A" * SLOT_SIZE, timeout=60)
    assert _memory(pid, address) == b"B" * SLOT_SIZE, "peer receive wrote into a bystander"
    assert receiver.returncode == 1, out
    assert b"incoming" in err and b"Traceback" not in err, err


def test_a_receiver_whose_source_sends_nothing_writes_nothing(short_tmp) -> None:
    """A migration that fails before the copy closes the pre-started receiver's stdin."""
    host = GuardedHost(short_tmp)
    domain = host.plan(Mode.AUDIT)
    done = subprocess.run([sys.executable, "-m", "ncdma", "peer", "receive", domain], input=b"",
                          env=host.env, capture_output=True, timeout=60)
    assert done.returncode == 1, done.stdout
    assert b"sent no slots" in done.stderr and b"Traceback" not in done.stderr, done.stderr
