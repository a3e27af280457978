"""ncdma installed on the lab's hosts, and opted-in domains to drive through real libvirt.

h1 gets the default prefix (/opt/ncdma), h2 another one (/opt/ncdma-alt) and an ncdma.conf
naming that install's own wrapper: its configured wrapper path differs from the fleet-wide
one the domains carry, so a migration to h2 must have its <emulator> rewritten by h2's hook.
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


def install(host: Host, wheels: Path) -> None:
    """ncdma on ``host`` with its prefix, and on h2 an ncdma.conf naming its own wrapper."""
    install_ncdma(host, wheels, PREFIXES[host.name])
    conf = host.root_path / "etc/ncdma/ncdma.conf"
    conf.write_text(conf.read_text().replace(f"wrapper = {FLEET_WRAPPER}",
                                             f"wrapper = {WRAPPERS[host.name]}"))


@pytest.fixture(scope="module")
def installed(lab: Lab) -> Iterator[dict[str, Host]]:
    """Both lab hosts with ncdma installed; removed again after the module's tests."""
    with tempfile.TemporaryDirectory() as scratch:
        build_wheels(REPO, Path(scratch))
        for host in lab.hosts.values():
            install(host, Path(scratch))
    yield dict(lab.hosts)
    for host in lab.hosts.values():
        if host.running:
            uninstall_ncdma(host, PREFIXES[host.name])


class OptedIn:
    """A persistent copy of the lab's virtio-vga domain under its own name and UUID."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name
        self.uuid = str(uuid.uuid4())

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
def opted_in(lab: Lab, installed: dict[str, Host], request) -> Iterator[OptedIn]:
    """A defined (not yet enabled) domain named after the test; removed everywhere after."""
    domain = OptedIn(lab, f"t-{request.node.name[5:40].replace('_', '-')}")
    domain.remove()
    yield domain
    domain.remove()


def log_text(host: Host) -> str:
    """ncdma's log file inside ``host``."""
    path = host.root_path / "var/log/ncdma/ncdma.log"
    return path.read_text() if path.exists() else ""
