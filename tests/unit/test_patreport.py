"""Method vm's report reader: what QEMU's preload library wrote in qmp/guest-pat.json, read
without following anything QEMU's user could put there (it owns qmp/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ncdma.store.patreport import read_pat_report

PID = 4242
HONORED = {"honored": True, "quirks2_mask": 0x7FF, "errno": 0, "pid": PID,
           "reason": "KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled on VM fd 10"}


@pytest.fixture
def domain(tmp_path: Path) -> Path:
    (tmp_path / "qmp").mkdir()
    return tmp_path


def _write(domain: Path, document: object) -> None:
    (domain / "qmp" / "guest-pat.json").write_text(json.dumps(document) + "\n")


def test_the_librarys_report_is_read_for_its_qemu(domain: Path) -> None:
    assert read_pat_report(domain, PID) is None  # none yet
    _write(domain, HONORED)
    state = read_pat_report(domain, PID)
    assert state is not None and state.honored and state.quirks2_mask == 0x7FF


def test_a_report_of_another_process_is_stale_and_not_honored(domain: Path) -> None:
    _write(domain, HONORED)
    state = read_pat_report(domain, PID + 1)
    assert state is not None and not state.honored and "stale report" in state.reason


@pytest.mark.parametrize("document", [[1], {"honored": "yes", "reason": "x", "pid": PID},
                                      {"honored": True, "pid": PID}])
def test_an_unreadable_report_is_not_honored_and_says_so(domain: Path, document) -> None:
    _write(domain, document)
    state = read_pat_report(domain, PID)
    assert state is not None and not state.honored and "cannot be read" in state.reason


def test_links_and_fifos_are_never_followed_or_opened(domain: Path, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "honored.json"
    elsewhere.write_text(json.dumps(HONORED))
    (domain / "qmp" / "guest-pat.json").symlink_to(elsewhere)
    assert read_pat_report(domain, PID) is None
    (domain / "qmp" / "guest-pat.json").unlink()
    os.mkfifo(domain / "qmp" / "guest-pat.json")  # would block a reader that opened it plainly
    assert read_pat_report(domain, PID) is None
    (domain / "qmp" / "guest-pat.json").unlink()
    (domain / "qmp").rmdir()
    (domain / "qmp").symlink_to(elsewhere.parent)  # qmp/ itself swapped for a link
    elsewhere.rename(elsewhere.with_name("guest-pat.json"))
    assert read_pat_report(domain, PID) is None
