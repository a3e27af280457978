"""The wrapper's filter against memslot ioctls made the ways a compromised or unusual VMM
could (issue 12): through the 32-bit syscall entry, and with the flag already set.

The "QEMU" here is a tiny static program (programs/memslot_abi.c, built by the test) that
the wrapper execs as the domain's emulator, with the real filter and the real guard.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from ncdma.model.verdict import Mode
from lab.guarded import GuardedHost

SOURCE = Path(__file__).with_name("programs") / "memslot_abi.c"


@pytest.fixture(scope="module")
def memslot_abi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program, static and non-PIE (its struct below 4 GiB for the 32-bit entry)."""
    binary = tmp_path_factory.mktemp("abi") / "memslot_abi"
    done = subprocess.run(["gcc", "-static", "-no-pie", "-O2", "-o", str(binary), str(SOURCE)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"gcc (Debian package gcc, libc6-dev): {done.stderr}"
    return binary


def _run(host: GuardedHost, program: Path, abi: str, mode: Mode) -> subprocess.CompletedProcess[str]:
    domain = host.plan(mode, emulator=str(program))
    return subprocess.run(host.wrapper_argv(domain), env={**host.env, "NCDMA_ABI": abi},
                          capture_output=True, text=True, timeout=60)


def test_the_program_makes_its_ioctls_without_ncdma(memslot_abi) -> None:
    """Without the filter both calls reach KVM (so the tests below can fail)."""
    for abi, expected in (("int80", "rc=0"), ("ownflag", "rc=-22")):  # stock kernel: EINVAL
        done = subprocess.run([str(memslot_abi)], env={"NCDMA_ABI": abi}, capture_output=True,
                              text=True, timeout=30)
        assert done.stdout.strip() == expected, (abi, done.stdout, done.stderr)


def test_a_memslot_ioctl_through_int_0x80_does_not_escape_the_filter(host, memslot_abi) -> None:
    done = _run(host, memslot_abi, "int80", Mode.ENFORCE)
    assert done.returncode == -signal.SIGSYS, (
        f"the 32-bit memslot ioctl ran unseen by the guard: {done.stdout!r} {done.stderr!r}")
    assert "rc=" not in done.stdout


def test_qemus_own_flag_on_a_slot_the_guard_did_not_select_is_stripped(host, memslot_abi) -> None:
    done = _run(host, memslot_abi, "ownflag", Mode.ENFORCE)
    # stripped before the kernel read the struct: this unpatched kernel accepts the slot
    assert done.stdout.strip() == "rc=0", done.stdout + done.stderr
    journal = host.final_journal(done.args[2])
    slot, = journal["slots"]
    assert slot["flags"] & host.settings.flag == 0, "the journal must show what KVM was asked"
    assert not slot["flag_set"]
    assert "stripped" in slot["reason"], slot
    assert "stripped" in host.log()
