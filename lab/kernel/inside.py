"""The nested run's driver: runs inside the lab kernel and writes one JSON report.

init.sh starts it as root, in a chroot of this machine's root (read-only 9p; tmpfs at
/tmp, /run, /var/tmp), from the checkout, with the nested /dev/kvm of the lab kernel.
Each step records what it saw; a step that raises records its error and the next one
still runs. The report is OUT/report.json; tests/kernel asserts on it.

Steps: ``ncdma check --json``; direct memslot ioctls with the flag (create, re-issue
with dirty logging, clear, set on a plain slot); the kernel's own KVM selftest for
memslots, as extended by the patch (the same binary in both kernels); a guarded QEMU in
enforce mode with bars=vram running the bartoggle guest (HOLD: the vram slot stays) with the journal
and ``ncdma status``; the libvirt hook's ``prepare`` on the example domain.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ncdma.kvm.abi import KVM_MEM_LOG_DIRTY_PAGES
from ncdma.kvm.device import KvmDevice
from ncdma.model.verdict import Mode
from ncdma.settings import DEFAULT_NON_COHERENT_DMA_FLAG

from lab.guarded import GuardedHost, guarded_host
from lab.guests.build import build_guest

REPO = Path(__file__).resolve().parents[2]
REPORT_SCHEMA_VERSION = 1
FLAG = DEFAULT_NON_COHERENT_DMA_FLAG
BAR_ADDR = 0xE0000000  # bartoggle's default: where the vram slot appears
TOGGLES = 200
HOLD_S = 3  # the guest keeps vram mapped this long, then maps it afresh (a guard knows it)
QUIET_S = 2 * HOLD_S  # no slot change for this long: the guest is done
GUARDED_TIMEOUT_S = 150.0
SELFTEST_TIMEOUT_S = 120.0
_IOCTL_SLOT, _IOCTL_GPA = 0, 0x100000
ISA_EXIT = ("-device", "isa-debug-exit,iobase=0x501,iosize=2")
_HOOK = REPO / "hooks/qemu.d/50-ncdma"
_EXAMPLE = REPO / "xml/examples/virtio-vga-opted-in.xml"
_WRAPPER = "/usr/local/libexec/ncdma/ncdma-qemu"
_HOOK_UUID = "5f0c1a2e-7d3b-4c8e-9a61-2b4d6e8f0a13"


def _run(argv: list[str], env: dict[str, str] | None = None, data: bytes | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=data, capture_output=True, env=env, timeout=timeout,
                          check=False)


def ncdma_check() -> dict[str, Any]:
    """``ncdma check --json`` as an operator runs it: exit status and document."""
    done = _run([sys.executable, "-m", "ncdma", "check", "--json"])
    return {"status": done.returncode, "json": json.loads(done.stdout),
            "stderr": done.stderr.decode(errors="replace")}


def flag_ioctls() -> dict[str, str]:
    """The kernel's answer (``OK`` or the errno's name) to each memslot request, in order."""
    size = mmap.PAGESIZE
    page = mmap.mmap(-1, size)
    answers: dict[str, str] = {}
    try:
        hva = ctypes.addressof(ctypes.c_char.from_buffer(page))
        with KvmDevice() as kvm, kvm.create_vm() as vm:
            for name, flags, length in (
                    ("create_flagged", FLAG, size),
                    ("reissue_flagged_with_dirty_log", FLAG | KVM_MEM_LOG_DIRTY_PAGES, size),
                    ("reissue_clearing_flag", KVM_MEM_LOG_DIRTY_PAGES, size),
                    ("delete_flagged", 0, 0),
                    ("create_plain", 0, size),
                    ("reissue_setting_flag", FLAG, size),
                    ("delete_plain", 0, 0)):
                answer = vm.set_user_memory_region(_IOCTL_SLOT, flags, _IOCTL_GPA, length, hva)
                answers[name] = errno.errorcode.get(answer, str(answer)) if answer else "OK"
    finally:
        page.close()
    return answers


def kvm_selftest(binary: Path) -> dict[str, Any]:
    """The KVM selftest the patch extends (set_memory_region_test), its loops cut to one."""
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: run `python3 -m lab.kernel build`")
    done = _run([str(binary), "1"], timeout=SELFTEST_TIMEOUT_S)
    output = (done.stdout + done.stderr).decode(errors="replace")
    return {"status": done.returncode, "output": output[-3000:]}


def _vram_slot(journal: dict[str, Any] | None) -> dict[str, Any] | None:
    slots = (journal or {}).get("slots", [])
    return next((slot for slot in slots if slot["gpa"] == BAR_ADDR), None)


def read_journal(host: GuardedHost, domain: str) -> dict[str, Any] | None:
    try:
        return host.journal(domain)
    except (OSError, ValueError):
        return None


def _settled(host: GuardedHost, domain: str, qemu: subprocess.Popen[bytes],
             deadline: float) -> bool:
    """Wait until the guest is done: the vram slot is live and no slot changed for QUIET_S.

    Only the guest's hold (HOLD_S) pauses its slot changes before the end, and it is shorter.
    """
    counts, since = None, time.monotonic()
    while time.monotonic() < deadline and qemu.poll() is None:
        journal = read_journal(host, domain)
        if journal is None or journal["counts"] != counts:
            counts, since = (journal or {}).get("counts"), time.monotonic()
        elif _vram_slot(journal) and time.monotonic() - since >= QUIET_S:
            return True
        time.sleep(0.5)
    return False


def ncdma_status(host: GuardedHost, domain: str, deadline: float) -> dict[str, Any]:
    """``ncdma status`` (text and JSON) once the flat view matches the journal, or at deadline."""
    command = [sys.executable, "-m", "ncdma", "status", domain]
    while True:
        done = _run([*command, "--json"], env=host.env)
        document = json.loads(done.stdout) if done.stdout else {}
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    text = _run(command, env=host.env)
    return {"status": done.returncode, "json": document,
            "text": text.stdout.decode(errors="replace")}


def guarded_vram_run(work: Path, image: Path | None = None, toggles: int = TOGGLES
                     ) -> dict[str, Any]:
    """QEMU under the nested KVM, wrapped by ncdma in enforce mode with bars=vram, running
    bartoggle (``image``: one built with ``toggles`` and HOLD_S; built here if None)."""
    image = image or build_guest("bartoggle", work, TOGGLES=toggles, HOLD=HOLD_S)
    with guarded_host(Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))) as host:
        domain = host.plan(Mode.ENFORCE)
        stderr = work / "qemu.stderr"
        started = time.monotonic()
        deadline = started + GUARDED_TIMEOUT_S
        with stderr.open("wb") as sink:
            qemu = subprocess.Popen(
                host.wrapper_argv(domain, "-m", "128", "-device", "virtio-vga,id=video0",
                                  *ISA_EXIT, "-bios", str(image)),
                env=host.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            settled = _settled(host, domain, qemu, deadline)
            settle_s = time.monotonic() - started
            status = ncdma_status(host, domain, deadline) if settled else None
            running = qemu.poll() is None
        finally:
            if qemu.poll() is None:
                qemu.terminate()
            qemu.wait(30)
        return {"toggles": toggles, "settled": settled, "settle_seconds": round(settle_s, 1),
                "running_after_toggles": running, "exit": qemu.returncode,
                "stderr": stderr.read_text(errors="replace")[-4000:],
                "journal": read_journal(host, domain), "status": status,
                "log": host.log()[-6000:]}


def hook_prepare(work: Path) -> dict[str, Any]:
    """The libvirt hook's ``prepare`` on the example domain, with require yes and no."""
    config = work / "hook.conf"
    config.write_text(f"[ncdma]\nstate_dir = {work}/hook-state\nlog_file = {work}/hook.log\n"
                      f"syslog = no\nwrapper = {_WRAPPER}\n")
    env = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NCDMA_CONFIG": str(config)}
    xml = _EXAMPLE.read_text()
    if "require='no'" not in xml or "</name>" not in xml:
        raise ValueError(f"{_EXAMPLE} no longer has <name> and require='no': update {__file__}")
    # libvirt gives hooks the defined domain, which always has a UUID, and with it QEMU's
    # DAC label (the user the guard service accepts an attach from); the example has neither
    xml = xml.replace("</name>", f"</name><uuid>{_HOOK_UUID}</uuid>", 1)
    xml = xml.replace("</domain>", "<seclabel type='dynamic' model='dac' relabel='yes'>"
                      "<label>+0:+0</label></seclabel></domain>", 1)
    outcomes: dict[str, Any] = {}
    for require in ("yes", "no"):
        data = xml.replace("require='no'", f"require='{require}'").encode()
        done = _run([sys.executable, str(_HOOK), "vm1", "prepare", "begin", "-"], env, data)
        plan = work / "hook-state" / "domains" / _HOOK_UUID / "plan.json"
        outcomes[f"require_{require}"] = {
            "status": done.returncode, "stderr": done.stderr.decode(errors="replace").strip(),
            "plan": json.loads(plan.read_text()) if plan.exists() else None}
    return outcomes


def _step(report: dict[str, Any], name: str, step: Callable[[], Any]) -> None:
    started = time.monotonic()
    try:
        report[name] = step()
    except Exception as err:  # noqa: BLE001 - recorded; the report says what failed
        report[name] = {"error": f"{type(err).__name__}: {err}"}
    report["seconds"][name] = round(time.monotonic() - started, 1)
    print(f"lab-inside: {name} done in {report['seconds'][name]} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run every step and write the report; exit 0 once it is written."""
    parser = argparse.ArgumentParser(prog="python -m lab.kernel.inside", description=__doc__)
    parser.add_argument("--kernel", required=True, help="stock or patched (recorded)")
    parser.add_argument("--selftest", type=Path, required=True, help="the KVM selftest binary")
    parser.add_argument("--out", type=Path, required=True, help="where report.json goes")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lab-inside-", dir="/tmp"))
    report: dict[str, Any] = {"schema_version": REPORT_SCHEMA_VERSION, "kernel": args.kernel,
                              "release": os.uname().release, "seconds": {}}
    _step(report, "check", ncdma_check)
    _step(report, "ioctls", flag_ioctls)
    _step(report, "selftest", lambda: kvm_selftest(args.selftest))
    _step(report, "guarded", lambda: guarded_vram_run(work))
    _step(report, "hook", lambda: hook_prepare(work))
    temporary = args.out / ".report.json.tmp"
    temporary.write_text(json.dumps(report, indent=2))
    os.replace(temporary, args.out / "report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
