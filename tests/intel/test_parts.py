"""The Intel lab's pure parts: the console parser, the file tree's archive, the kernels' keys."""
from __future__ import annotations

import subprocess
from pathlib import Path

from lab.intel.run import parse_console
from lab.intel.tree import Tree
from lab.kernel.recipe import SOURCE_6_12, Recipe, Variant

CONSOLE = """\
[    1.0] noise
lab-init: kernel 6.1.192, steps ept-flag,check
lab-step-begin ept-flag
eptprobe: slot_data gfn 0x100 flags 0x8 OK
eptprobe: data_written 0x5b
 eptprobe-123 [000] ..... 9.1: kvm_mmu_set_spte: gfn 1 spte 6000000019e1b77 (rwxu) level 1 at 19f1008
 eptprobe-123 [000] ..... 9.2: kvm_mmu_set_spte: gfn 100 spte 6000000019f3b37 (rwxu) level 1 at 1
 eptprobe-123 [000] ..... 9.3: kvm_mmu_set_spte: gfn 200 spte 60000000aa00bf7 (rwxu) level 2 at 1
lab-step-end ept-flag 0 123
lab-step-begin check
{
  "mode": "enforce"
}
lab-step-end check 1 4000
lab-step-begin guarded
"""


def test_the_console_parser_splits_steps_and_reads_their_output() -> None:
    marks = ((30.0, "lab-step-begin ept-flag"), (31.5, "lab-step-end ept-flag 0 123"))
    steps = parse_console(CONSOLE, marks)
    assert list(steps) == ["ept-flag", "check", "guarded"]
    ept = steps["ept-flag"]
    assert (ept.status, ept.guest_seconds, ept.wall_seconds) == (0, 1.23, 1.5)
    assert ept.probe()["slot_data gfn 0x100 flags 0x8"] == "OK"
    assert ept.probe()["data_written"] == "0x5b"
    assert ept.sptes() == {0x1: 0x6000000019E1B77, 0x100: 0x6000000019F3B37}  # 4 KiB only
    assert steps["check"].document() == {"mode": "enforce"}
    assert steps["check"].status == 1
    assert steps["guarded"].status is None  # never ended: the run stopped there


def test_the_tree_keeps_links_and_parents_and_cpio_reads_it(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "file").write_text("data")
    (tmp_path / "link").symlink_to("real")
    tree = Tree()
    tree.add_host(tmp_path / "link" / "file")
    tree.add_file("bin/tool", b"#!/bin/sh\n")
    archive = tmp_path / "tree.cpio"
    archive.write_bytes(tree.archive())
    listing = subprocess.run(["cpio", "-itv", "-F", str(archive)], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    names = [line.split()[8] for line in listing]
    base = str(tmp_path).strip("/")
    assert names.index(f"{base}/real") < names.index(f"{base}/real/file")
    assert f"{base}/link" in names and "bin/tool" in names
    link = next(line for line in listing if line.split()[8] == f"{base}/link")
    assert link.startswith("l") and link.endswith("-> real")


def test_a_tree_drops_what_the_other_archive_already_has(tmp_path: Path) -> None:
    (tmp_path / "shared").write_text("same")
    first, second = Tree(), Tree()
    first.add_host(tmp_path / "shared")
    second.add_host(tmp_path / "shared")
    second.add_file("own", b"x")
    second.drop_files_of(first)
    assert "own" in second.entries and str(tmp_path / "shared").strip("/") not in second.entries
    assert str(tmp_path).strip("/") in second.entries  # directories stay


def test_the_6_12_kernel_has_its_own_source_and_cache_key() -> None:
    assert Variant.UPSTREAM.source is SOURCE_6_12 and Variant.STOCK.source.package.endswith("6.1")
    keys = {Recipe(variant, "1").key for variant in Variant}
    assert len(keys) == len(Variant)
