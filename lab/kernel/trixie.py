"""Debian 13's linux-source-6.12, fetched with apt into the cache (this host stays Debian 12).

apt-get runs with a private configuration (trixie's main, the Debian archive keyring this
host already has, lists and downloads under the cache) so that the host's own sources and
package state are untouched. The tarball is taken out of the .deb, its version written
beside it (part of the kernel's cache key), and its source checked for upstream's
KVM_X86_QUIRK_IGNORE_GUEST_PAT before it is used.
"""
from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

from lab.errors import LabError
from lab.kernel.recipe import SOURCE_6_12

SUITE_LINE = ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
              "http://deb.debian.org/debian trixie main\n")
QUIRK_HEADER = "arch/x86/include/uapi/asm/kvm.h"
QUIRK_LINE = "#define KVM_X86_QUIRK_IGNORE_GUEST_PAT\t\t(1 << 9)"
VERSION_FILE = SOURCE_6_12.tarball.with_name("version")


def _apt_options(root: Path) -> list[str]:
    """apt options that keep every file apt reads or writes under ``root``."""
    return ["-q", "-o", f"Dir::Etc::SourceList={root}/sources.list",
            "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={root}/lists",
            "-o", f"Dir::Cache={root}", "-o", "Dir::State::status=/dev/null",
            "-o", f"Dir::Etc::PreferencesParts={root}/preferences.d",
            "-o", "Dir::Etc::Preferences=/dev/null", "-o", "APT::Architectures=amd64"]


def _apt(argv: list[str], root: Path) -> None:
    done = subprocess.run([argv[0], *_apt_options(root), *argv[1:]], cwd=root,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} (trixie, under {root}) failed ({done.returncode}): "
                       f"{done.stderr.strip()[-500:]}")


def _has_quirk(tarball: Path) -> bool:
    """Whether the source's uapi header defines KVM_X86_QUIRK_IGNORE_GUEST_PAT as bit 9."""
    with tarfile.open(tarball) as archive:
        for member in archive:
            if member.name.endswith(QUIRK_HEADER):
                header = archive.extractfile(member)
                return header is not None and QUIRK_LINE in header.read().decode()
    return False


def fetch_source_6_12() -> str:
    """Make sure linux-source-6.12's tarball is in the cache; return the package's version.

    :raise LabError: When apt fails, or the source lacks KVM_X86_QUIRK_IGNORE_GUEST_PAT.
    """
    if VERSION_FILE.exists() and SOURCE_6_12.tarball.exists():
        return VERSION_FILE.read_text().strip()
    root = SOURCE_6_12.tarball.parent / "apt"
    for directory in ("lists/partial", "archives/partial", "preferences.d"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(SUITE_LINE)
    _apt(["apt-get", "update"], root)
    _apt(["apt-get", "download", SOURCE_6_12.package], root)
    debs = sorted(root.glob(f"{SOURCE_6_12.package}_*_all.deb"))
    if not debs:
        raise LabError(f"apt-get download {SOURCE_6_12.package} left no .deb in {root}")
    deb = debs[-1]
    version = deb.name.split("_")[1]
    member = f"./usr/src/{SOURCE_6_12.tarball.name}"
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                          stdout=subprocess.PIPE) as dpkg:
        done = subprocess.run(["tar", "-x", "-C", str(root), member], stdin=dpkg.stdout,
                              capture_output=True, text=True, check=False)
    if dpkg.returncode != 0 or done.returncode != 0:
        raise LabError(f"cannot take {member} out of {deb}: {done.stderr.strip()}")
    unpacked = root / member
    if not _has_quirk(unpacked):
        raise LabError(f"{deb.name} has no `{QUIRK_LINE.split()[1]}` in {QUIRK_HEADER}: "
                       "the Intel lab's 6.12 kernel needs upstream's quirk")
    shutil.move(unpacked, SOURCE_6_12.tarball)
    deb.unlink()
    VERSION_FILE.write_text(version + "\n")
    return version
