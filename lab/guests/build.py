"""Build the firmware-only test guests (lab/guests/*.S) into 64 KiB -bios images.

    from lab.guests.build import build_guest, exit_code
    image = build_guest("portio", tmp_path, COUNT=1000)
    ... QEMU's exit status is then exit_code("STATUS_PORTIO_DONE") == 33

Needs GNU as and ld (Debian package binutils).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

GUESTS_DIR = Path(__file__).resolve().parent
GUESTS = ("portio", "bartoggle", "hostile", "intruder", "vramfill", "ramtouch")
IMAGE_SIZE = 0x10000
RESET_VECTOR = 0xFFF0
FAR_JUMP = 0xEA  # opcode of `ljmp $segment, $offset`, the reset vector's first byte
ENTRY_SEGMENT = 0xF000  # where -bios maps the image below 1 MiB


class GuestBuildError(RuntimeError):
    """as or ld failed, or the image is not a 64 KiB image with a far jump at 0xfff0."""


def _run(args: list[str]) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise GuestBuildError(f"{args[0]} not found: install binutils") from err
    if done.returncode != 0:
        raise GuestBuildError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")


def reset_vector_jump(data: bytes) -> int | None:
    """Where DATA's reset vector jumps in segment 0xf000; None if DATA is no guest image."""
    jump = data[RESET_VECTOR:RESET_VECTOR + 5]
    if len(data) != IMAGE_SIZE or jump[0] != FAR_JUMP:
        return None
    offset, segment = int.from_bytes(jump[1:3], "little"), int.from_bytes(jump[3:5], "little")
    return offset if segment == ENTRY_SEGMENT else None


def build_guest(name: str, out_dir: Path, **symbols: int) -> Path:
    """Assemble and link guest NAME into OUT_DIR/NAME[-SYMBOL=value...].bin and return its path.

    SYMBOLS override the guest's build symbols (its .S file lists them, with defaults),
    e.g. COUNT for portio, TOGGLES for bartoggle, STAY for hostile.
    """
    if name not in GUESTS:
        raise ValueError(f"unknown guest {name!r}; guests are {', '.join(GUESTS)}")
    stem = "-".join([name, *(f"{key}={value}" for key, value in sorted(symbols.items()))])
    out_dir.mkdir(parents=True, exist_ok=True)
    obj, image = out_dir / f"{stem}.o", out_dir / f"{stem}.bin"
    defsyms = [arg for key, value in sorted(symbols.items())
               for arg in ("--defsym", f"{key}={value}")]
    _run(["as", "--32", "-I", str(GUESTS_DIR), *defsyms, "-o", str(obj),
          str(GUESTS_DIR / f"{name}.S")])
    _run(["ld", "-m", "elf_i386", "-Ttext", "0", "-e", "start", "--oformat", "binary",
          "-o", str(image), str(obj)])
    obj.unlink()
    if reset_vector_jump(image.read_bytes()) is None:
        raise GuestBuildError(f"{image}: not {IMAGE_SIZE} bytes with a far jump to segment "
                              f"{ENTRY_SEGMENT:#x} at {RESET_VECTOR:#x}")
    return image


def _statuses() -> dict[str, int]:
    """The `.set STATUS_NAME, value` lines of guest.inc: the values the guests write to 0x501."""
    text = (GUESTS_DIR / "guest.inc").read_text()
    return {name: int(value, 0) for name, value in
            re.findall(r"^\s*\.set\s+(STATUS_\w+),\s*(0x[0-9a-fA-F]+|\d+)", text, re.MULTILINE)}


STATUSES = _statuses()


def exit_code(status: str) -> int:
    """QEMU's exit status once a guest wrote STATUS to isa-debug-exit: (value << 1) | 1."""
    return (STATUSES[status] << 1) | 1
