"""Debian 12's distribution kernel for the AppArmor lab: fetched, cached, booted.

``apt-get download`` fetches the image package linux-image-amd64 depends on (the host's
own apt sources); its vmlinuz and the modules the 9p shares need are kept in the cache
under the package's name and version. The initramfs is lab/kernel's (static busybox and
init.sh) plus those modules, their load order, and the driver to run.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.kernel.boot import boot_for_report, report_share, tcg_argv
from lab.kernel.initramfs import INIT_SCRIPT, initramfs_image, static_busybox
from lab.kernel.recipe import CACHE_DIR

META_PACKAGE = "linux-image-amd64"
# The modules the 9p shares need, in load order (modules.dep of 6.1: 9p needs netfs and
# fscache; virtio_pci its two transports and virtio_ring).
MODULES = ("drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
           "drivers/virtio/virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci_legacy_dev.ko",
           "drivers/virtio/virtio_pci.ko", "net/9p/9pnet.ko", "net/9p/9pnet_virtio.ko",
           "fs/netfs/netfs.ko", "fs/fscache/fscache.ko", "fs/9p/9p.ko")
DRIVER = "lab.apparmor.inside"
APPEND = "apparmor=1 security=apparmor"


def kernel_dir(package: str, version: str) -> Path:
    """Where a Debian kernel image package is unpacked in the cache: ``vmlinuz``, and
    MODULES under ``modules/``."""
    return CACHE_DIR / f"apparmor-{package}_{version}"


def _run(argv: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({done.returncode}): "
                       f"{done.stderr.strip()[-500:]}")
    return done.stdout


def current_kernel() -> tuple[str, str]:
    """The image package that linux-image-amd64 depends on now, and its version.

    :raise LabError: When apt does not know it.
    """
    show = _run(["apt-cache", "show", "--no-all-versions", META_PACKAGE])
    found = re.search(r"^Depends: (linux-image-[0-9.]+-[0-9]+-amd64) \(= ([^)]+)\)", show, re.M)
    if found is None:
        raise LabError(f"apt-cache show {META_PACKAGE} names no kernel image: apt-get update")
    return found.group(1), found.group(2)


def cached_kernel() -> Path:
    """The newest Debian kernel already in the cache (its :func:`kernel_dir`).

    :raise LabError: When none is: run `python3 -m lab.apparmor build`.
    """
    found = sorted(CACHE_DIR.glob("apparmor-linux-image-*/vmlinuz"),
                   key=lambda path: path.stat().st_mtime)
    if not found:
        raise LabError("the AppArmor lab's kernel is not fetched: run `python3 -m lab.apparmor "
                       "build`")
    return found[-1].parent


def fetch_kernel() -> Path:
    """Make sure the current Debian kernel's vmlinuz and modules are in the cache; its
    :func:`kernel_dir`.

    :raise LabError: When apt-get download or the unpacking fails.
    """
    package, version = current_kernel()
    kernel = kernel_dir(package, version)
    if (kernel / "vmlinuz").exists():
        return kernel
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="apparmor-fetch-") as scratch:
        work = Path(scratch)
        work.chmod(0o755)  # apt's _apt user writes the download here
        _run(["apt-get", "download", "-q", f"{package}={version}"], cwd=work)
        [deb] = work.glob("*.deb")
        _run(["dpkg-deb", "-x", str(deb), str(work / "x")])
        staging = work / "kernel"
        [image] = (work / "x/boot").glob("vmlinuz-*")
        [modules] = (work / "x/lib/modules").iterdir()
        for name in MODULES:
            target = staging / "modules" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(modules / "kernel" / name, target)
        shutil.copyfile(image, staging / "vmlinuz")
        staging.rename(kernel)
    return kernel


def initramfs(kernel: Path, path: Path) -> Path:
    """lab/kernel's initramfs with ``kernel``'s MODULES and this lab's driver, at ``path``."""
    files = [(f"modules/{name}", (kernel / "modules" / name).read_bytes())
             for name in MODULES]
    files += [("modules/order", "\n".join(MODULES).encode() + b"\n"),
              ("driver", DRIVER.encode())]
    path.write_bytes(initramfs_image(static_busybox(), INIT_SCRIPT.read_bytes(), files))
    return path


def run_apparmor_lab(run_dir: Path, timeout: float) -> tuple[dict[str, Any], float, Path]:
    """Boot the Debian kernel with AppArmor and run the driver; its report, the seconds and
    the console log.

    :raise LabError: When the kernel is not fetched, or the run fails (console's tail).
    """
    kernel = cached_kernel()
    share, console = report_share(run_dir)
    argv = tcg_argv(kernel / "vmlinuz", initramfs(kernel, run_dir / "initramfs.cpio"),
                    share, console, APPEND)
    report, seconds = boot_for_report(argv, f"Debian's {kernel.name}", run_dir, timeout)
    return report, seconds, console
