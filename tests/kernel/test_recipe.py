"""The patched-kernel lab's pure parts: cache keys, the config check, the initramfs format."""
from __future__ import annotations

import subprocess
from pathlib import Path

from lab.kernel.build import fragment_mismatches
from lab.kernel.initramfs import initramfs_image
from lab.kernel.recipe import Recipe, Variant


def test_each_variant_and_source_version_has_its_own_cache_key() -> None:
    keys = {Recipe(variant, version).key for variant in Variant for version in ("1", "2")}
    assert len(keys) == 2 * len(Variant)
    assert Recipe(Variant.PATCHED, "1").cache_dir.name.startswith("kernel-patched-")


def test_the_config_check_names_what_kconfig_dropped() -> None:
    fragment = "# comment\nCONFIG_KVM=y\nCONFIG_NR_CPUS=4\n# CONFIG_RD_XZ is not set\n"
    honored = "CONFIG_KVM=y\nCONFIG_NR_CPUS=4\n# CONFIG_RD_XZ is not set\n"
    assert fragment_mismatches(honored, fragment) == []
    dropped = "# CONFIG_KVM is not set\nCONFIG_NR_CPUS=8\nCONFIG_RD_XZ=y\n"
    assert fragment_mismatches(dropped, fragment) == [
        "CONFIG_KVM=y (got not set)", "CONFIG_NR_CPUS=4 (got 8)",
        "# CONFIG_RD_XZ is not set (got CONFIG_RD_XZ=y)"]


def test_the_initramfs_is_a_cpio_archive_the_cpio_tool_reads(tmp_path: Path) -> None:
    archive = tmp_path / "initramfs.cpio"
    archive.write_bytes(initramfs_image(b"busybox bytes", b"#!/bin/busybox sh\n"))
    listing = subprocess.run(["cpio", "-itv", "-F", str(archive)], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert [line.split()[-1] for line in listing] == [
        "bin", "dev", "proc", "sys", "newroot", "dev/console", "bin/busybox", "init"]
    console = next(line for line in listing if line.endswith("dev/console"))
    assert console.startswith("crw-------") and "5," in console
