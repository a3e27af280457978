"""The Intel lab: the lab's kernels under Bochs's emulated Skylake-X (VMX, EPT, self-snoop).

Each kernel boots once for the session (lab/intel/run.py lists its steps); the tests read
its serial console. EPT entries come from KVM's own kvm_mmu_set_spte trace events, for a
VM made by lab/intel/eptprobe.c (code at gfn 0x1, never flagged; data at gfn 0x100). In an
EPT entry, bits 5:3 are the memory type (6 = WB) and bit 6 is "ignore PAT": set, the
guest's PAT is overridden and the page is WB whatever the guest maps it as; clear, the
guest's PAT decides (WC for a framebuffer mapped WC). The kernels and images come from
`python3 -m lab.intel build` (scripts/test runs it).
"""
from __future__ import annotations

from typing import Any

import pytest

from lab.errors import LabError
from lab.guests.build import exit_code
from lab.intel.run import GUARDED_STEPS, IntelRun, Step, run_intel
from lab.kernel.build import source_version
from lab.kernel.inside import FLAG
from lab.kernel.recipe import Recipe, Variant


CODE_GFN, DATA_GFN = 0x1, 0x100
WB = 6
QUIRK_IGNORE_GUEST_PAT = 1 << 9
REJECTS = "rejects KVM_MEM_NON_COHERENT_DMA"


def memory_type(spte: int) -> int:
    """EPT entry bits 5:3."""
    return (spte >> 3) & 7


def ignores_pat(spte: int) -> bool:
    """EPT entry bit 6."""
    return bool(spte >> 6 & 1)


_RUNS: dict[tuple[Variant, tuple[str, ...] | None], IntelRun] = {}


def boot(variant: Variant, tmp_path_factory: pytest.TempPathFactory,
         steps: tuple[str, ...] | None = None) -> IntelRun:
    """``variant``'s kernel booted once under Bochs for the whole session (with ``steps``, or
    the kernel's own)."""
    key = (variant, steps)
    if key not in _RUNS:
        try:
            _RUNS[key] = run_intel(Recipe(variant, source_version(variant)),
                                   tmp_path_factory.mktemp(f"intel-{variant.value}"),
                                   steps=steps)
        except LabError as err:
            pytest.fail(str(err))
        done = _RUNS[key]
        walls = {name: found.wall_seconds for name, found in done.steps.items()}
        print(f"\n{variant.value} kernel under Bochs: {done.bochs.seconds:.1f} s wall, "
              f"steps (wall s) {walls}")
    return _RUNS[key]


@pytest.fixture
def patched(tmp_path_factory: pytest.TempPathFactory) -> IntelRun:
    return boot(Variant.PATCHED, tmp_path_factory)


@pytest.fixture
def guarded(tmp_path_factory: pytest.TempPathFactory) -> IntelRun:
    """The patched kernel booted for the guarded run alone (with the others, one Bochs run
    would pass its 3 minutes)."""
    return boot(Variant.PATCHED, tmp_path_factory, GUARDED_STEPS)


@pytest.fixture
def stock(tmp_path_factory: pytest.TempPathFactory) -> IntelRun:
    return boot(Variant.STOCK, tmp_path_factory)


@pytest.fixture
def upstream(tmp_path_factory: pytest.TempPathFactory) -> IntelRun:
    return boot(Variant.UPSTREAM, tmp_path_factory)


def step(run: IntelRun, name: str, status: int | None = 0) -> Step:
    """A step that finished (with ``status``, unless None)."""
    try:
        found = run.step(name)
    except LabError as err:
        pytest.fail(str(err))
    if status is not None:
        assert found.status == status, f"{name} exited {found.status}:\n{found.text}"
    return found


def check(run: IntelRun) -> dict[str, Any]:
    document: dict[str, Any] = step(run, "check", None).document()
    return document


def ept_of(run: IntelRun, name: str) -> dict[int, int]:
    """The EPT entries of eptprobe's two slots in step ``name``, after it ran its guest."""
    found = step(run, name)
    probe = found.probe()
    # the guest halted (KVM_EXIT_HLT) after reading the seed and writing seed + 1
    assert (probe["exit_reason"], probe["data_read"], probe["data_written"]) == (
        "5", "0x5a", "0x5b"), found.text
    sptes = found.sptes()
    assert {CODE_GFN, DATA_GFN} <= set(sptes), found.text
    return sptes


# --- the CPU Bochs emulates ---------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["patched", "stock", "upstream"])
def test_the_guest_cpu_is_an_intel_with_vmx_ept_and_self_snoop(
        kernel: str, request: pytest.FixtureRequest) -> None:
    run: IntelRun = request.getfixturevalue(kernel)
    cpu = check(run)["host"]["cpu"]
    assert cpu["vendor"] == "GenuineIntel"
    assert (cpu["vmx"], cpu["ept"], cpu["self_snoop"]) == (True, True, True), cpu
    assert "kvm_intel" in check(run)["host"]["kvm_modules"]


# --- ncdma check ---------------------------------------------------------------------------

def test_check_on_the_patched_kernel_says_enforce(patched: IntelRun) -> None:
    document = check(patched)
    assert step(patched, "check", None).status == 0, document
    assert document["mode"] == "enforce" and document["enforce_possible"] is True, document
    probe = document["host"]["probe"]
    assert probe["flag_supported"] is True and probe["answers"][0]["outcome"] == "accepted"
    assert document["reasons"] == [], document["reasons"]


def test_check_on_the_stock_kernel_says_audit_with_einval(stock: IntelRun) -> None:
    document = check(stock)
    assert document["mode"] == "audit" and document["enforce_possible"] is False
    assert document["host"]["probe"]["answers"][0]["outcome"] == "EINVAL"
    assert any(REJECTS in reason for reason in document["reasons"]), document["reasons"]


def test_check_on_6_12_rejects_the_flag_and_sees_the_quirk_offered(upstream: IntelRun) -> None:
    document = check(upstream)
    probe = document["host"]["probe"]
    assert document["host"]["kernel"].startswith("6.12.")
    assert probe["answers"][0]["outcome"] == "EINVAL" and probe["flag_supported"] is False
    assert probe["quirks2_mask"] & QUIRK_IGNORE_GUEST_PAT, probe
    assert probe["ignore_guest_pat_quirk_disableable"] is True, probe
    # method vm is this host's: quirk offered, Intel with VMX, EPT and self-snoop
    assert document["methods"] == ["vm"], document["method_checks"]
    vm = document["method_checks"]["vm"]
    assert (vm["allowed"], vm["quirk_offered"], vm["self_snoop"], vm["ept"]) == \
        (True, True, True, True), vm


def test_check_names_the_methods_each_kernel_allows(patched: IntelRun, stock: IntelRun) -> None:
    assert check(patched)["methods"] == ["slot"]
    assert check(stock)["methods"] == []
    assert "KVM_X86_QUIRK_IGNORE_GUEST_PAT" in check(stock)["method_checks"]["vm"]["reasons"][0]


def test_only_6_12_offers_the_ignore_guest_pat_quirk(patched: IntelRun,
                                                     upstream: IntelRun) -> None:
    assert step(upstream, "quirks").probe()["ignore_guest_pat_offered"] == "yes"
    assert step(patched, "quirks").probe()["ignore_guest_pat_offered"] == "no"


# --- EPT entries: the flag on the patched kernel --------------------------------------------

def test_patched_kernel_a_flagged_slot_lets_the_guest_pat_decide(patched: IntelRun) -> None:
    assert step(patched, "ept-flag").probe()[f"slot_data gfn {DATA_GFN:#x} flags {FLAG:#x}"] \
        == "OK"
    sptes = ept_of(patched, "ept-flag")
    flagged, code = sptes[DATA_GFN], sptes[CODE_GFN]
    assert memory_type(flagged) == WB and not ignores_pat(flagged), f"{flagged:#x}"
    # the unflagged slot of the same VM: WB, guest PAT ignored
    assert memory_type(code) == WB and ignores_pat(code), f"{code:#x}"


@pytest.mark.parametrize("kernel", ["patched", "stock", "upstream"])
def test_unflagged_slots_are_wb_with_ignore_pat(kernel: str,
                                                request: pytest.FixtureRequest) -> None:
    sptes = ept_of(request.getfixturevalue(kernel), "ept-plain")
    for gfn in (CODE_GFN, DATA_GFN):
        assert memory_type(sptes[gfn]) == WB and ignores_pat(sptes[gfn]), f"{sptes[gfn]:#x}"


@pytest.mark.parametrize("kernel", ["stock", "upstream"])
def test_unpatched_kernels_refuse_the_flag(kernel: str, request: pytest.FixtureRequest) -> None:
    found = step(request.getfixturevalue(kernel), "ept-flag", 1)
    assert found.probe()[f"slot_data gfn {DATA_GFN:#x} flags {FLAG:#x}"] == "EINVAL"
    assert found.sptes() == {}


# --- EPT entries: upstream's quirk on 6.12 -------------------------------------------------

def test_6_12_with_the_quirk_disabled_lets_the_guest_pat_decide_for_all_ram(
        upstream: IntelRun) -> None:
    assert step(upstream, "ept-quirk-off").probe()["disable_quirk"] == "OK"
    sptes = ept_of(upstream, "ept-quirk-off")
    for gfn in (CODE_GFN, DATA_GFN):
        assert memory_type(sptes[gfn]) == WB and not ignores_pat(sptes[gfn]), f"{sptes[gfn]:#x}"


def test_6_1_cannot_disable_the_quirk(patched: IntelRun) -> None:
    mask = int(step(patched, "quirks").probe()["quirks2"], 16)
    assert not mask & QUIRK_IGNORE_GUEST_PAT


# --- the guard in enforce mode with the real flag, QEMU 7.2 under kvm_intel -----------------

def test_a_hostile_guest_gets_nothing_flagged(patched: IntelRun) -> None:
    report: dict[str, Any] = step(patched, "hostile").document()
    # the guest (vram BAR over its RAM) ran to its end under the guard: QEMU exits with its status
    assert report["exit"] == exit_code("STATUS_HOSTILE_DONE"), report["stderr"]
    journal = report["journal"]
    assert journal["mode"] == "enforce", journal
    assert journal["slots"] and not any(slot["flag_set"] for slot in journal["slots"]), journal
    assert journal["counts"].get("tag", 0) == 0, journal["counts"]


# --- method vm: QEMU 7.2 wrapped by ncdma, the preload library disabling the quirk, 6.12 ---

RAM_PAGES = range(0x10, 0x20)  # the pages ramtouch writes (FIRST_PAGE 0x10, PAGES 16)


def ram_sptes(found: Step) -> dict[int, int]:
    """The EPT entries of ramtouch's RAM pages in step ``found``."""
    sptes = found.sptes()
    assert set(RAM_PAGES) <= set(sptes), found.text
    return {gfn: sptes[gfn] for gfn in RAM_PAGES}


def test_6_12_qemu_without_ncdma_gets_ram_entries_with_ignore_pat(upstream: IntelRun) -> None:
    found = step(upstream, "qemu-ram", exit_code("STATUS_RAMTOUCH_DONE"))
    for gfn, spte in ram_sptes(found).items():
        assert memory_type(spte) == WB and ignores_pat(spte), f"gfn {gfn:#x}: {spte:#x}"


def test_6_12_qemu_wrapped_with_method_vm_gets_ram_entries_without_ignore_pat(
        upstream: IntelRun) -> None:
    found = step(upstream, "method-vm")
    report: dict[str, Any] = found.document()
    assert report["exit"] == exit_code("STATUS_RAMTOUCH_DONE"), report["stderr"]
    journal = report["journal"]
    assert journal["guest_pat"]["honored"] is True, journal["guest_pat"]
    assert journal["guest_pat"]["quirks2_mask"] & QUIRK_IGNORE_GUEST_PAT
    assert not any(slot["flag_set"] for slot in journal["slots"]), journal["slots"]
    assert "guest PAT: honored for the whole VM" in report["status"], report["status"]
    for gfn, spte in ram_sptes(found).items():
        assert memory_type(spte) == WB and not ignores_pat(spte), f"gfn {gfn:#x}: {spte:#x}"


# --- the guarded run: the vram slot tagged with the real flag, EPT entries, ncdma status ----

CHAIN4_GFNS = range(0xA0, 0xB0)  # vramfill's window on vram: 64 KiB at 0xa0000
LOG_DIRTY_PAGES = 0x1


def test_the_guard_tags_vram_with_the_real_flag_and_the_guest_pat_decides_there(
        guarded: IntelRun) -> None:
    found = step(guarded, "guarded")
    report: dict[str, Any] = found.document()
    # the guest wrote 64 KiB into the flagged slot and read them back: QEMU ran on (a kernel
    # refusing the flag stops QEMU with "Invalid argument")
    assert report["exit"] == exit_code("STATUS_VRAMFILL_OK"), report
    assert "Invalid argument" not in report["stderr"], report["stderr"]
    journal = report["journal"]
    assert journal["mode"] == "enforce", journal
    [window] = [slot for slot in journal["slots"] if slot["gpa"] == CHAIN4_GFNS[0] << 12]
    # the flag set, ORed into QEMU's own request (the journal's flags), which already has
    # dirty logging (VGA tracks vram: QEMU 7.2 never re-issues it with only its flags changed)
    assert window["decision"] == "tag" and window["flag_set"], window
    assert window["flags"] == LOG_DIRTY_PAGES and journal["flag"] == FLAG, journal
    others = [slot for slot in journal["slots"] if slot is not window]
    assert others and not any(slot["flag_set"] for slot in others), others
    # ncdma status, run while the VM lived
    status = report["status"]
    assert status["status"] == 0, status
    [shown] = [slot for slot in status["json"]["journal"]["slots"]
               if slot["gpa"] == window["gpa"]]
    assert shown["decision"] == "tag" and shown["flag_set"], shown
    [row] = [line for line in status["text"].splitlines()
             if "0x00000000000a0000-" in line]
    assert " tag " in row and " set " in row, status["text"]
    # EPT entries KVM made for the guest's writes: WB without ignore-PAT in the flagged slot
    sptes = found.sptes()
    written = [gfn for gfn in CHAIN4_GFNS if gfn in sptes]
    assert written, found.text[-3000:]
    for gfn in written:
        assert memory_type(sptes[gfn]) == WB and not ignores_pat(sptes[gfn]), \
            f"gfn {gfn:#x}: {sptes[gfn]:#x}"
    stack = sptes.get(0x6)  # the guest's stack page below 0x7000 (RAM, never flagged)
    assert stack is not None and memory_type(stack) == WB and ignores_pat(stack), \
        found.text[-3000:]
