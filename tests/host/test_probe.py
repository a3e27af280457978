"""The kernel probe against this machine's real KVM (an unpatched 6.x kernel, FACTS.md)."""

from __future__ import annotations

import errno
import os

import pytest

from ncdma.errors import KvmError
from ncdma.kvm import abi
from ncdma.kvm.probe import probe_kernel


def test_unpatched_kernel_rejects_bit_3_on_both_ioctls() -> None:
    probe = probe_kernel()
    assert probe.api_version == abi.KVM_API_VERSION
    assert [(a.ioctl, a.available, a.errno) for a in probe.answers] == [
        ("KVM_SET_USER_MEMORY_REGION", True, errno.EINVAL),
        ("KVM_SET_USER_MEMORY_REGION2", True, errno.EINVAL),
    ], "this machine's kernel is unpatched (FACTS.md); on a patched kernel this test must change"
    assert probe.flag_rejected and not probe.flag_supported


def test_a_flag_the_kernel_knows_is_accepted_and_the_slot_deleted() -> None:
    # LOG_DIRTY_PAGES is accepted by every kernel: it drives the probe's success path for real.
    # Probing twice in one VM would fail with EEXIST if the first slot had not been deleted.
    first = probe_kernel(abi.KVM_MEM_LOG_DIRTY_PAGES)
    assert first.flag_supported and not first.flag_rejected
    assert all(answer.outcome == "accepted" for answer in first.answers)


def test_quirk_mask_is_read_from_the_vm() -> None:
    probe = probe_kernel()
    assert probe.quirks2_mask & 1, "KVM_X86_QUIRK_LINT0_REENABLED is in every x86 mask"


def test_missing_device_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(KvmError) as caught:
        probe_kernel(device=str(tmp_path / "kvm"))
    assert caught.value.errno == errno.ENOENT
    assert "does not exist" in caught.value.message and "modprobe" in caught.value.hint


def test_device_without_permission_is_a_clear_error(tmp_path) -> None:
    node = tmp_path / "kvm"
    kvm = os.stat("/dev/kvm")
    os.mknod(node, 0o600 | 0o020000, kvm.st_rdev)
    os.chown(node, 65534, 65534)
    pid = os.fork()
    if pid == 0:  # the child drops root and probes the real device node
        os.setgid(65534)
        os.setuid(65534)
        try:
            probe_kernel(device=str(node))
        except KvmError as err:
            os._exit(10 if err.errno == errno.EACCES and "permission denied" in err.message else 11)
        os._exit(12)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 10
