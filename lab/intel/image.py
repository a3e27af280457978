"""The Intel lab's initramfs: newc cpio archives the boot loader concatenates, each cached
under a hash of its bytes in /var/cache/ncdma-lab/intel.

- base: a static busybox, /init (lab/intel/init.sh), /dev/console, and eptprobe
  (lab/intel/eptprobe.c, compiled static here);
- python: this checkout's venv interpreter and the modules ncdma's commands and the
  driver import (lab/intel/pyclosure.py), with the checkout's own files they read;
- qemu: Debian 12's QEMU 7.2 with its libraries and the files a run of the test guest
  opens (seen with strace here), the test guests, assembled here (the guest has no
  binutils), and method vm's preload library (preload/), built here.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from pathlib import Path

from lab.errors import LabError
from lab.intel.pyclosure import REPO, add_python
from lab.intel.inside import GUESTS_DIR, PRELOAD
from lab.intel.tree import Tree, cached_archive
from lab.kernel.initramfs import BUSYBOX
from lab.kernel.recipe import CACHE_DIR

from lab.guests.build import build_guest
from lab.preload import build_preload

INTEL_DIR = Path(__file__).resolve().parent
INTEL_CACHE = CACHE_DIR / "intel"
QEMU = Path("/usr/bin/qemu-system-x86_64")
EPTPROBE = "/bin/eptprobe"
# The guests the guarded runs use, with their build symbols (lab/intel/inside.py runs them).
GUESTS = {"vramfill": {"GO": 1}, "hostile": {"STAY": 0}, "portio": {"COUNT": 10},
          "ramtouch": {"PAGES": 16}}
# The files a QEMU run opens that are not its libraries: modules, option ROMs.
_OPENED = re.compile(r'openat\(AT_FDCWD, "(/usr/[^"]+)"')


def _eptprobe() -> bytes:
    """lab/intel/eptprobe.c, compiled static.

    :raise LabError: When gcc fails.
    """
    with tempfile.TemporaryDirectory(prefix="eptprobe-") as work:
        binary = Path(work) / "eptprobe"
        done = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", str(binary),
                               str(INTEL_DIR / "eptprobe.c")], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise LabError(f"gcc cannot build eptprobe: {done.stderr.strip()[-800:]}")
        return binary.read_bytes()


def base_archive() -> Path:
    """busybox, /init and eptprobe."""
    tree = Tree()
    for directory in ("dev", "proc", "sys", "tmp", "run", "etc"):
        tree.add_dir(directory)
    tree.add_char_device("dev/console", (5, 1))
    tree.add_file("bin/busybox", BUSYBOX.read_bytes())
    tree.add_file("init", (INTEL_DIR / "init.sh").read_bytes())
    tree.add_file(EPTPROBE, _eptprobe())
    tree.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    tree.add_file("etc/group", b"root:x:0:\n", 0o644)
    return cached_archive(tree, INTEL_CACHE, "base")


def _python_tree() -> Tree:
    tree = Tree()
    add_python(tree)
    # guest.inc: lab/guests/build.py reads the guests' exit statuses from it on import
    for path in ("hooks/qemu.d/50-ncdma", "xml", "lab/guests/guest.inc"):
        tree.add_host(REPO / path)
    return tree


def python_archive() -> Path:
    """The interpreter, the imported modules, the checkout files they read."""
    return cached_archive(_python_tree(), INTEL_CACHE, "python")


def _qemu_files(guest: Path) -> list[str]:
    """What QEMU opens under /usr when it runs ``guest`` (one that exits) with a virtio-vga
    (strace).

    :raise LabError: When strace is missing or QEMU does not run here.
    """
    with tempfile.TemporaryDirectory(prefix="qemu-trace-") as work:
        trace = Path(work) / "trace"
        argv = ["strace", "-f", "-qq", "-e", "trace=openat", "-e", "status=successful",
                "-o", str(trace), str(QEMU), "-machine", "pc,accel=kvm", "-m", "128",
                "-display", "none", "-nodefaults", "-device", "virtio-vga",
                "-device", "isa-debug-exit,iobase=0x501,iosize=2", "-bios", str(guest)]
        try:
            subprocess.run(argv, capture_output=True, timeout=60, check=False)
        except FileNotFoundError:
            raise LabError("strace is missing: run scripts/bootstrap") from None
        found = sorted(set(_OPENED.findall(trace.read_text()))) if trace.exists() else []
    if not any("virtio-vga" in path for path in found):
        raise LabError(f"strace saw QEMU open no virtio-vga module: {found}")
    return found


def qemu_archive() -> Path:
    """QEMU 7.2, its libraries and opened files, and the test guests; without the files the
    python archive has (libc and others: the two are unpacked together)."""
    tree = Tree()
    tree.add_host(QEMU)
    tree.add_libraries(QEMU)
    with tempfile.TemporaryDirectory(prefix="intel-guests-") as work:
        images = {name: build_guest(name, Path(work), **symbols)
                  for name, symbols in GUESTS.items()}
        for name, image in images.items():
            tree.add_file(f"{GUESTS_DIR}/{name}.bin", image.read_bytes(), 0o644)
        tree.add_file(str(PRELOAD), build_preload(Path(work) / "preload").read_bytes(), 0o644)
        for path in _qemu_files(images["portio"]):
            tree.add_host(path)
            if path.endswith(".so"):
                tree.add_libraries(path)
    tree.drop_files_of(_python_tree())
    return cached_archive(tree, INTEL_CACHE, "qemu")


def archives_key(archives: list[Path]) -> str:
    """A short hash of the archives (their names carry their contents' hash)."""
    return hashlib.sha256(" ".join(path.name for path in archives).encode()).hexdigest()[:16]

