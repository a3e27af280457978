"""ncdma installed on the lab's hosts, and opted-in domains to drive through real libvirt.

h1 gets the default prefix (/opt/ncdma), h2 another one (/opt/ncdma-alt) and an ncdma.conf
naming that install's own wrapper: its configured wrapper path differs from the fleet-wide
one the domains carry, so a migration to h2 must have its <emulator> rewritten by h2's hook.

Every module runs twice, once per mode the hosts allow (the `installed` fixture's
parameter): audit (this kernel rejects the flag, the CPU is not Intel), and enforce with the
lab's stand-in flag (install-host --lab-stand-in: KVM_MEM_READONLY in place of the flag,
ncdma.standin), so the hook, guard, status and migration run their enforce paths for real.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab
from lab.host import Host
from lab.install import FLEET_WRAPPER, build_wheels, install_ncdma, uninstall_ncdma

REPO = Path(__file__).resolve().parents[3]
PREFIXES = {"h1": "/opt/ncdma", "h2": "/opt/ncdma-alt"}
WRAPPERS = {"h1": FLEET_WRAPPER, "h2": "/opt/ncdma-alt/bin/ncdma-qemu"}
LAB_XML = (REPO / "xml/examples/lab-virtio-vga.xml").read_text()


MODES = ("audit", "enforce")
STAND_IN = "lab stand-in flag 0x2"


class Installed(dict[str, Host]):
    """Both lab hosts with ncdma installed, and the mode their verdict allows."""

    def __init__(self, hosts: dict[str, Host], mode: str) -> None:
        super().__init__(hosts)
        self.mode = mode

    @property
    def enforce(self) -> bool:
        """The hosts run enforce mode (with the lab's stand-in flag)."""
        return self.mode == "enforce"

    @property
    def mode_text(self) -> str:
        """The mode as ncdma's outputs show it."""
        return f"enforce ({STAND_IN})" if self.enforce else "audit"


def install(host: Host, wheels: Path, stand_in: bool = False) -> None:
    """ncdma on ``host`` with its prefix, and on h2 an ncdma.conf naming its own wrapper."""
    install_ncdma(host, wheels, PREFIXES[host.name], stand_in)
    conf = host.root_path / "etc/ncdma/ncdma.conf"
    conf.write_text(conf.read_text().replace(f"wrapper = {FLEET_WRAPPER}",
                                             f"wrapper = {WRAPPERS[host.name]}"))


@pytest.fixture(scope="module", params=MODES)
def installed(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Installed]:
    """Both lab hosts with ncdma installed for the parameter's mode; removed again after the
    module's tests."""
    with tempfile.TemporaryDirectory() as scratch:
        build_wheels(REPO, Path(scratch))
        for host in lab.hosts.values():
            install(host, Path(scratch), request.param == "enforce")
    yield Installed(dict(lab.hosts), request.param)
    for host in lab.hosts.values():
        if host.running:
            uninstall_ncdma(host, PREFIXES[host.name])


class OptedIn:
    """A persistent copy of the lab's virtio-vga domain under its own name and UUID."""

    def __init__(self, lab: Lab, name: str, installed: Installed | None = None) -> None:
        self.lab = lab
        self.name = name
        self.uuid = str(uuid.uuid4())
        self.installed = installed

    @property
    def enforce(self) -> bool:
        """The hosts run enforce mode (the lab's stand-in flag)."""
        return self.installed is not None and self.installed.enforce

    @property
    def mode(self) -> str:
        """The mode the hosts allow: the plan's mode for a policy that asks for enforce."""
        return "enforce" if self.enforce else "audit"

    @property
    def mode_text(self) -> str:
        """That mode as ncdma's outputs show it."""
        return f"enforce ({STAND_IN})" if self.enforce else "audit"

    def ncdma(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the installed ncdma command inside ``host``."""
        return self.lab.host(host).run([f"{PREFIXES[host]}/bin/ncdma", *args], timeout=60)

    def define(self, host: str = "h1", xml: str | None = None) -> None:
        source = (xml or LAB_XML).replace("<name>lab-virtio-vga</name>",
                                          f"<name>{self.name}</name><uuid>{self.uuid}</uuid>")
        self.lab.host(host).run(["virsh", "define", "/dev/stdin"], input=source, check=True)

    def enable(self, host: str = "h1", *options: str) -> subprocess.CompletedProcess[str]:
        done = self.ncdma(host, "enable", self.name, *options)
        assert done.returncode == 0, done.stderr
        return done

    def inactive_xml(self, host: str = "h1") -> str:
        return self.lab.host(host).virsh("dumpxml", "--inactive", "--security-info",
                                         self.name).stdout

    def state(self, host: str = "h1") -> str:
        return self.lab.host(host).virsh("domstate", self.name, check=False).stdout.strip()

    def plan(self, host: str = "h1") -> dict[str, object] | None:
        path = self.lab.host(host).root_path / f"run/ncdma/domains/{self.uuid}/plan.json"
        return json.loads(path.read_text()) if path.exists() else None

    def qemu_pid(self, host: str = "h1") -> int:
        pid_file = self.lab.host(host).root_path / f"run/libvirt/qemu/{self.name}.pid"
        return int(pid_file.read_text())

    def remove(self) -> None:
        for host in self.lab.hosts.values():
            if host.running:
                host.virsh("destroy", self.name, check=False)
                host.virsh("undefine", self.name, check=False)


@pytest.fixture
def opted_in(lab: Lab, installed: Installed, request) -> Iterator[OptedIn]:
    """A defined (not yet enabled) domain named after the test; removed everywhere after."""
    name = request.node.originalname[5:36].replace("_", "-")
    domain = OptedIn(lab, f"t-{name}-{installed.mode[0]}", installed)
    domain.remove()
    yield domain
    domain.remove()


def log_text(host: Host) -> str:
    """ncdma's log file inside ``host``."""
    path = host.root_path / "var/log/ncdma/ncdma.log"
    return path.read_text() if path.exists() else ""
