"""Boot a lab kernel under Bochs's emulated Skylake-X (VMX, EPT, self-snoop).

The kernel and the initramfs archives go on an isolinux CD image (xorriso), cached under a
hash of what it holds. Debian 12's Bochs has no headless display and stops at its debugger
prompt unless told otherwise, so it runs with ``display_library: term`` under a pty
(``script``), with a debugger command file that says ``c``; the guest's serial console
goes to a file, which is what the tests read. The guest powers off when its /init is done.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError, tail
from lab.intel.image import INTEL_CACHE, archives_key
from lab.kernel.recipe import Recipe

BOCHS = "/usr/bin/bochs"
ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
BIOS = Path("/usr/share/bochs/BIOS-bochs-latest")
VGA_BIOS = Path("/usr/share/vgabios/vgabios.bin")
CPU_MODEL = "corei7_skylake_x"
MEGS = 1024
CONSOLE_FILE = "console.log"


@dataclass(frozen=True)
class BochsRun:
    """A finished Bochs run: its serial console, what it cost, and when (wall seconds
    since the start) each console line starting with MARK appeared."""

    console: Path
    seconds: float
    marks: tuple[tuple[float, str], ...]


MARK = "lab-"
POLL_S = 0.25


def _new_marks(console: Path, seen: int) -> tuple[list[str], int]:
    """The MARK lines after the first ``seen`` bytes of the console, and its new length."""
    try:
        with console.open("rb") as handle:
            handle.seek(seen)
            data = handle.read()
    except FileNotFoundError:
        return [], seen
    complete = data[:data.rfind(b"\n") + 1]
    lines = [line for line in complete.decode(errors="replace").splitlines()
             if line.startswith(MARK)]
    return lines, seen + len(complete)


def _isolinux_cfg(archives: list[Path], append: str) -> str:
    initrd = ",".join(f"/{path.name}" for path in archives)
    return (f"DEFAULT lab\nPROMPT 0\nTIMEOUT 0\nLABEL lab\n  KERNEL /bzImage\n"
            f"  INITRD {initrd}\n  APPEND {append}\n")


def build_iso(recipe: Recipe, archives: list[Path], append: str) -> Path:
    """The boot CD for ``recipe``'s kernel and ``archives``, cached by what it holds.

    :raise LabError: When the kernel is not built or xorriso fails.
    """
    if not recipe.bzimage.exists():
        raise LabError(f"the {recipe.variant.value} kernel is not built: "
                       "run `python3 -m lab.intel build`")
    config = _isolinux_cfg(archives, append)
    key = hashlib.sha256(f"{recipe.key} {archives_key(archives)} {config}".encode()).hexdigest()
    iso = INTEL_CACHE / f"boot-{recipe.variant.value}-{key[:16]}.iso"
    if iso.exists():
        return iso
    cfg = iso.with_suffix(".cfg")
    cfg.write_text(config)
    grafts = [f"isolinux/isolinux.bin={ISOLINUX}", f"isolinux/ldlinux.c32={LDLINUX}",
              f"isolinux/isolinux.cfg={cfg}", f"bzImage={recipe.bzimage}",
              *(f"{path.name}={path}" for path in archives)]
    temporary = iso.with_suffix(".tmp")
    done = subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(temporary),
                           "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
                           "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                           "-graft-points", *grafts], capture_output=True, text=True,
                          check=False)
    cfg.unlink()
    if done.returncode != 0:
        raise LabError(f"xorriso failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    temporary.rename(iso)
    for stale in INTEL_CACHE.glob(f"boot-{recipe.variant.value}-*.iso"):
        if stale != iso:
            stale.unlink()
    return iso


def bochsrc(iso: Path, console: Path, log: Path) -> str:
    """Bochs's configuration: the Skylake-X CPU, the CD, the serial console to a file."""
    return (f"megs: {MEGS}\n"
            f"cpu: model={CPU_MODEL}, count=1\n"
            f"romimage: file={BIOS}\n"
            f"vgaromimage: file={VGA_BIOS}\n"
            f"ata0-master: type=cdrom, path={iso}, status=inserted\n"
            "boot: cdrom\n"
            "clock: sync=none, time0=local\n"
            f"com1: enabled=1, mode=file, dev={console}\n"
            "display_library: term\n"
            f"log: {log}\n"
            # nested KVM reads MSRs Bochs lacks on every VM exit: reporting each one would
            # write hundreds of MB of log and slow the run down
            "panic: action=fatal\nerror: action=ignore\ninfo: action=ignore\n"
            "debug: action=ignore\n")


def run_bochs(iso: Path, run_dir: Path, timeout: float) -> BochsRun:
    """Boot ``iso`` and wait for the guest to power off; return the console's path.

    :raise LabError: When Bochs is missing, fails, or runs past ``timeout``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    console, log = run_dir / CONSOLE_FILE, run_dir / "bochs.log"
    console.unlink(missing_ok=True)
    (run_dir / "bochsrc").write_text(bochsrc(iso, console, log))
    (run_dir / "debugger.rc").write_text("c\n")
    if not Path(BOCHS).exists():
        raise LabError(f"{BOCHS} is missing: run scripts/bootstrap (packages bochs, bochsbios, "
                       "vgabios, bochs-term)")
    command = f"{BOCHS} -q -f bochsrc -rc debugger.rc"
    started = time.monotonic()
    marks: list[tuple[float, str]] = []
    seen = 0
    with subprocess.Popen(["script", "-q", "-e", "-c", command, "/dev/null"], cwd=run_dir,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True) as bochs:
        while bochs.poll() is None:
            if time.monotonic() - started > timeout:
                os.killpg(bochs.pid, signal.SIGKILL)  # script and the Bochs it started
                bochs.wait()
                walls = "\n".join(f"{seconds:7.1f} s  {line}" for seconds, line in marks)
                raise LabError(f"Bochs ran over {timeout:.0f} s; console ({console}):\n"
                               f"{tail(console, 30)}\nBochs log ({log}):\n{tail(log, 10)}\n"
                               f"wall time of each lab- line:\n{walls}")
            time.sleep(POLL_S)
            lines, seen = _new_marks(console, seen)
            marks += [(round(time.monotonic() - started, 1), line) for line in lines]
    lines, seen = _new_marks(console, seen)
    marks += [(round(time.monotonic() - started, 1), line) for line in lines]
    return BochsRun(console, time.monotonic() - started, tuple(marks))
