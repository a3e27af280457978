"""The patched-kernel lab: Debian's 6.1 kernel with and without the flag, booted nested.

Each kernel boots once under TCG (module-scoped fixtures) with this machine's root shared
read-only; the driver inside it (lab/kernel/inside.py) runs `ncdma check`, direct memslot
ioctls, the KVM selftest the patch extends, a guarded QEMU under the nested KVM in enforce
mode with bars=vram, and the hook's `prepare`, and writes a report that these tests assert
on. The kernels come from `python3 -m lab.kernel build` (scripts/test runs it): a missing
kernel fails with that hint, and a failed run shows the guest console's tail. The nested
CPU is AMD (TCG's `-cpu max`): the patched kernel accepts the flag but ncdma's mode is
audit, so the guard is put in enforce mode by its plan, as tests/host does.
"""
from __future__ import annotations

import time
from typing import Any

import pytest
from ncdma.kvm.abi import KVM_MEM_LOG_DIRTY_PAGES

from lab.errors import LabError, tail
from lab.kernel.boot import NestedRun, run_nested
from lab.kernel.build import source_version
from lab.kernel.inside import BAR_ADDR, FLAG, TOGGLES
from lab.kernel.recipe import Recipe, Variant

NESTED_TIMEOUT_S = 600
REJECTS = "rejects KVM_MEM_NON_COHERENT_DMA"


def _boot(variant: Variant, tmp_path_factory: pytest.TempPathFactory) -> NestedRun:
    started = time.monotonic()
    try:
        done = run_nested(Recipe(variant, source_version(variant)),
                          tmp_path_factory.mktemp(f"nested-{variant.value}"), NESTED_TIMEOUT_S)
    except LabError as err:
        pytest.fail(str(err))
    print(f"\n{variant.value} kernel: nested run {time.monotonic() - started:.1f} s, "
          f"steps {done.report['seconds']}")
    return done


@pytest.fixture(scope="module")
def patched(tmp_path_factory: pytest.TempPathFactory) -> NestedRun:
    return _boot(Variant.PATCHED, tmp_path_factory)


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> NestedRun:
    return _boot(Variant.STOCK, tmp_path_factory)


def step(run: NestedRun, name: str) -> Any:
    """One step's result from the report; a step that raised fails with the console's tail."""
    result = run.report.get(name)
    if result is None or (isinstance(result, dict) and "error" in result):
        pytest.fail(f"step {name} failed in the {run.recipe.variant.value} kernel: "
                    f"{result}\nconsole:\n{tail(run.console, 40)}")
    return result


def vram_slot(guarded: dict[str, Any]) -> dict[str, Any]:
    """The live vram slot of KVM address space 0 in the guard's journal."""
    slots = [slot for slot in (guarded["journal"] or {}).get("slots", [])
             if slot["gpa"] == BAR_ADDR and slot["slot"] >> 16 == 0]
    assert slots, f"no vram slot in the journal: {guarded['journal']}\n{guarded['log']}"
    slot: dict[str, Any] = slots[0]
    return slot


def test_both_runs_used_their_own_kernel(patched: NestedRun, stock: NestedRun) -> None:
    assert (patched.report["kernel"], stock.report["kernel"]) == ("patched", "stock")
    assert patched.report["release"].startswith("6.1.") and stock.report["release"] == \
        patched.report["release"]


# --- ncdma check -------------------------------------------------------------------------

def test_check_on_the_patched_kernel_reports_the_flag_supported(patched: NestedRun) -> None:
    check = step(patched, "check")["json"]
    assert check["host"]["probe"]["flag_supported"] is True
    assert check["host"]["probe"]["answers"][0]["outcome"] == "accepted"
    # AMD under TCG: the flag changes nothing there, so audit is the honest mode
    assert check["mode"] == "audit"
    assert not any(REJECTS in reason for reason in check["reasons"]), check["reasons"]
    assert any("AuthenticAMD" in reason for reason in check["reasons"]), check["reasons"]


def test_check_on_the_stock_kernel_reports_the_flag_rejected(stock: NestedRun) -> None:
    check = step(stock, "check")["json"]
    assert check["host"]["probe"]["flag_supported"] is False
    assert check["host"]["probe"]["answers"][0]["outcome"] == "EINVAL"
    assert any(REJECTS in reason for reason in check["reasons"]), check["reasons"]


# --- the memslot ABI, asked directly -----------------------------------------------------

def test_the_patched_kernel_keeps_the_flag_for_the_life_of_a_slot(patched: NestedRun) -> None:
    assert step(patched, "ioctls") == {
        "create_flagged": "OK",
        "reissue_flagged_with_dirty_log": "OK",  # dirty logging on: the flag stays
        "reissue_clearing_flag": "EINVAL",       # clearing it on a live slot: refused
        "delete_flagged": "OK",
        "create_plain": "OK",
        "reissue_setting_flag": "EINVAL",        # a slot can only be tagged when created
        "delete_plain": "OK",
    }


def test_the_stock_kernel_rejects_the_flag(stock: NestedRun) -> None:
    answers = step(stock, "ioctls")
    assert answers["create_flagged"] == "EINVAL"
    assert (answers["create_plain"], answers["reissue_setting_flag"]) == ("OK", "EINVAL")


def test_the_kvm_selftest_passes_on_the_patched_kernel(patched: NestedRun) -> None:
    selftest = step(patched, "selftest")
    assert selftest["status"] == 0, selftest["output"]
    assert "Testing memslot flags (supported: 0xb)" in selftest["output"]


def test_the_kvm_selftest_fails_on_the_stock_kernel_at_the_flag(stock: NestedRun) -> None:
    selftest = step(stock, "selftest")
    assert selftest["status"] != 0
    assert f"Flag {FLAG:#x} should be accepted" in selftest["output"], selftest["output"]


# --- a guarded QEMU under the nested KVM, enforce mode, bars=vram --------------------------

def test_patched_kernel_accepts_the_tagged_vram_slot_and_qemu_runs_on(patched: NestedRun) -> None:
    guarded = step(patched, "guarded")
    assert guarded["settled"], f"toggles did not finish: {guarded['stderr']}\n{guarded['log']}"
    assert guarded["running_after_toggles"], guarded["stderr"]
    assert "Invalid argument" not in guarded["stderr"]
    slot = vram_slot(guarded)
    assert slot["flag_set"] and slot["size"] == 8 << 20 and slot["owner"]["kind"] == "vram", slot
    # QEMU asked for dirty logging on vram: the guard ORed the flag into those flags
    assert slot["flags"] & KVM_MEM_LOG_DIRTY_PAGES and not slot["flags"] & FLAG
    journal = guarded["journal"]
    assert journal["mode"] == "enforce" and journal["counts"]["tag"] >= 1
    assert journal["counts"]["delete"] >= TOGGLES
    tagged = [event for event in journal["events"]
              if event["gpa"] == BAR_ADDR and event["flag_set"]]
    assert tagged, "no re-creation of the vram slot was tagged"


def assert_status_shows_vram_tagged(status: dict[str, Any] | None) -> None:
    """``ncdma status --json`` of a guarded run: guard alive, flat view agrees, vram tagged."""
    assert status is not None and status["status"] == 0, status
    document = status["json"]
    assert document["guard"]["alive"] and document["flatview_checked"]
    assert document["mismatches"] == []
    # one slot per KVM address space (the SMM one too), both tagged
    vram = [slot for slot in document["journal"]["slots"] if slot["gpa"] == BAR_ADDR]
    assert vram and all(slot["flag_set"] for slot in vram), vram


def test_patched_kernel_status_shows_the_tagged_slot(patched: NestedRun) -> None:
    status = step(patched, "guarded")["status"]
    assert_status_shows_vram_tagged(status)
    vram_line = next(line for line in status["text"].splitlines() if f"{BAR_ADDR:#018x}" in line)
    assert " set " in vram_line and "vram" in vram_line, status["text"]


def test_stock_kernel_fails_the_tagged_vram_slot_with_einval(stock: NestedRun) -> None:
    guarded = step(stock, "guarded")
    assert not guarded["running_after_toggles"] and guarded["exit"] not in (0, None)
    assert "Invalid argument" in guarded["stderr"], guarded["stderr"]
    # the slot QEMU died on (in either KVM address space) is the one the guard tagged
    assert any(slot["flag_set"] for slot in guarded["journal"]["slots"]
               if slot["gpa"] == BAR_ADDR), "the flag never reached the kernel"


# --- the libvirt hook's prepare on the example domain -------------------------------------

def test_hook_refuses_enforce_on_the_stock_kernel(stock: NestedRun) -> None:
    hook = step(stock, "hook")
    refused = hook["require_yes"]
    assert refused["status"] == 1 and refused["plan"] is None, refused
    assert "refusing to start" in refused["stderr"] and REJECTS in refused["stderr"], refused
    fallback = hook["require_no"]
    assert fallback["status"] == 0 and fallback["plan"]["mode"] == "audit", fallback
    assert any(REJECTS in reason for reason in fallback["plan"]["reasons"])


def test_hook_on_the_patched_kernel_blames_only_the_cpu(patched: NestedRun) -> None:
    hook = step(patched, "hook")
    refused = hook["require_yes"]
    assert refused["status"] == 1 and REJECTS not in refused["stderr"], refused
    assert "AuthenticAMD" in refused["stderr"], refused
    fallback = hook["require_no"]
    assert fallback["status"] == 0 and fallback["plan"]["mode"] == "audit", fallback
    assert not any(REJECTS in reason for reason in fallback["plan"]["reasons"])
