"""The AppArmor lab's driver: runs inside Debian's kernel with AppArmor, writes one report.

init.sh starts it as root in a chroot of this machine's root (read-only 9p, tmpfs at /run
and /tmp), from the checkout. Two domains, A and B, get ncdma's state as the hook leaves
it: ``/run/ncdma/domains/UUID/wrapper.json`` and a listening ``qmp/qmp.sock`` (served by
this unconfined process, as QEMU serves it). Each domain gets a profile of libvirt's
shape (TEMPLATE.qemu: ``profile libvirt-UUID`` including abstractions/base, the
abstraction ncdma's Ansible role renders, and ``libvirt-UUID.files``), loaded with
apparmor_parser, under two rule sets:

- ``old``: the role's abstraction as it was before issue 12 (``domains/** rwk`` for every
  QEMU, its unix rule without ``addr=none``), no per-domain rules;
- ``new``: the role's abstraction now, and each domain's own rules added by ncdma's hook
  code (:func:`ncdma.virt.apparmor.confine_domain`).

Under each, a process confined as domain A's QEMU (``exec libvirt-A`` written to
/proc/self/attr/exec, then Python) reads both domains' wrapper.json and connects to both
QMP sockets. The report also says which AppArmor features the kernel offers (whether it
mediates unix sockets at all) and the kernel's AppArmor denials (which name the profile
that denied).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jinja2

from ncdma.settings import Settings
from ncdma.virt.apparmor import confine_domain

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "ansible/roles/ncdma/templates/apparmor-libvirt-qemu.j2"
A = "aaaaaaaa-0000-4000-8000-00000000000a"
B = "bbbbbbbb-0000-4000-8000-00000000000b"
SETTINGS = Settings(state_dir=Path("/run/ncdma"))
PROFILES = Path("/tmp/apparmor")
LOAD = ("apparmor_parser", "--replace", "--skip-cache")
FEATURES = Path("/sys/kernel/security/apparmor/features")
PYTHON = "/usr/bin/python3"
# The lines the role's abstraction had before issue 12 (git b3e42d7^), in place of today's.
OLD_UNIX = "unix (connect, send, receive) type=stream peer=(label=unconfined),"
NEW_UNIX = "unix (connect, send, receive) type=stream addr=none peer=(label=unconfined),"
OLD_STATE = "{state}/domains/** rwk,"

# What the confined process tries: each target's answer is "ok" or the errno's name.
PROBE = r"""
import errno, json, socket, sys
paths = json.loads(sys.argv[1])
out = {}
for name, path in paths.items():
    try:
        if path.endswith(".sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(path)
                out[name] = "ok" if s.recv(16) else "no greeting"
        else:
            with open(path) as f:
                f.read()
            out[name] = "ok"
    except OSError as err:
        out[name] = errno.errorcode.get(err.errno, str(err.errno))
print(json.dumps(out))
"""


def abstraction(old: bool) -> str:
    """The role's abstraction rendered for this machine; ``old``: as before issue 12."""
    template = jinja2.Template(TEMPLATE.read_text(), undefined=jinja2.StrictUndefined)
    rules: str = template.render(
        ansible_managed="lab.apparmor", ncdma_wrapper="/usr/local/libexec/ncdma/ncdma-qemu",
        ncdma_prefix="/opt/ncdma", _ncdma_conf="/etc/ncdma/ncdma.conf", ncdma_qemu=PYTHON,
        _ncdma_preload="/usr/local/libexec/ncdma/libncdma-pat.so",
        _ncdma_guard_socket=str(SETTINGS.state_dir / "guard.sock"),
        ncdma_log_file="/var/log/ncdma/ncdma.log", ncdma_state_dir=str(SETTINGS.state_dir))
    if not old:
        return rules
    if NEW_UNIX not in rules:
        raise RuntimeError(f"the role's abstraction has no {NEW_UNIX!r}: update lab.apparmor")
    return rules.replace(NEW_UNIX, f"{OLD_UNIX}\n{OLD_STATE.format(state=SETTINGS.state_dir)}")


def write_profile(uuid: str, included: Path) -> Path:
    """Domain ``uuid``'s profile and files as virt-aa-helper leaves them before the hook."""
    (PROFILES / f"libvirt-{uuid}.files").write_text(
        f'  "/var/lib/libvirt/images/{uuid}.qcow2" rwk,\n')
    profile = PROFILES / f"libvirt-{uuid}"
    profile.write_text(
        "#include <tunables/global>\n\n"
        f"profile libvirt-{uuid} flags=(attach_disconnected) {{\n"
        "  #include <abstractions/base>\n"
        f'  #include "{included}"\n'
        f'  #include "{PROFILES}/libvirt-{uuid}.files"\n'
        "}\n")
    return profile


def load(profile: Path) -> None:
    done = subprocess.run([*LOAD, str(profile)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"apparmor_parser refused {profile}: {done.stderr.strip()}")


def serve(uuid: str) -> Path:
    """Domain ``uuid``'s state: wrapper.json and a QMP socket that greets (QEMU's part)."""
    directory = SETTINGS.domain_dir(uuid)
    (directory / "qmp").mkdir(parents=True, exist_ok=True)
    (directory / "wrapper.json").write_text(json.dumps({"uuid": uuid}))
    path = directory / "qmp/qmp.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def accept() -> None:
        while True:
            connection, _ = server.accept()
            with connection:
                connection.sendall(b'{"QMP": {}}\n')

    threading.Thread(target=accept, daemon=True).start()
    return directory


def probe_as(uuid: str, targets: dict[str, str]) -> dict[str, Any]:
    """What a process confined by domain ``uuid``'s profile can reach of ``targets``."""
    def confine() -> None:
        with open("/proc/self/attr/exec", "w") as attr:
            attr.write(f"exec libvirt-{uuid}")

    done = subprocess.run([PYTHON, "-I", "-S", "-c", PROBE, json.dumps(targets)],
                          capture_output=True, text=True, timeout=60, preexec_fn=confine,
                          check=False)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def features() -> dict[str, Any]:
    """The kernel's AppArmor: enabled, and whether it mediates unix sockets (af_unix)."""
    enabled = Path("/sys/module/apparmor/parameters/enabled")
    network = FEATURES / "network"
    return {"enabled": enabled.read_text().strip() if enabled.exists() else "absent",
            "kernel": os.uname().release,
            "top": sorted(p.name for p in FEATURES.iterdir()) if FEATURES.exists() else [],
            "network": sorted(p.name for p in network.iterdir()) if network.is_dir() else [],
            "af_unix": (network / "af_unix").exists() or (FEATURES / "network_v9").exists()}


def run_rules(old: bool, directories: dict[str, Path]) -> dict[str, Any]:
    """Load both domains' profiles under one rule set; probe as domain A."""
    included = PROFILES / ("ncdma-old" if old else "ncdma")
    included.write_text(abstraction(old))
    for uuid in directories:
        profile = write_profile(uuid, included)
        if old:
            load(profile)
        else:
            confine_domain(SETTINGS, uuid, PROFILES, LOAD)
    targets = {"own_wrapper": str(directories[A] / "wrapper.json"),
               "other_wrapper": str(directories[B] / "wrapper.json"),
               "own_qmp": str(directories[A] / "qmp/qmp.sock"),
               "other_qmp": str(directories[B] / "qmp/qmp.sock")}
    return {"files": (PROFILES / f"libvirt-{A}.files").read_text(), "probe": probe_as(A, targets)}


def main(argv: list[str] | None = None) -> int:
    """Run every step, write OUT/report.json."""
    parser = argparse.ArgumentParser(prog="python -m lab.apparmor.inside", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where report.json goes")
    out = parser.parse_args(argv).out
    report: dict[str, Any] = {}
    try:
        report["apparmor"] = features()
        PROFILES.mkdir(parents=True, exist_ok=True)
        directories = {uuid: serve(uuid) for uuid in (A, B)}
        for name, old in (("old", True), ("new", False)):
            try:
                report[name] = run_rules(old, directories)
            except Exception as err:  # noqa: BLE001 - the report says what failed
                report[name] = {"error": repr(err)}
        denials = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
        report["denials"] = [line for line in denials.splitlines() if "apparmor=" in line][-20:]
    except Exception as err:  # noqa: BLE001 - the report says what failed
        report["error"] = repr(err)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
