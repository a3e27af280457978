"""Fixtures of the integration tests: the two-host lab and the example virtio-vga domain."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab, LabError, config
from lab.lab import check_requirements

REPO = Path(__file__).resolve().parents[2]

DOMAIN = "lab-virtio-vga"
DOMAIN_XML = f"{config.REPO_MOUNT}/xml/examples/{DOMAIN}.xml"


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The lab, brought up for the session; taken down at the end only if this session
    brought it up. A machine that cannot run it (no /dev/kvm, not root) fails the tests."""
    try:
        check_requirements()
    except LabError as error:
        pytest.fail(f"the lab cannot run here: {error}")
    lab = Lab(REPO)
    was_up = lab.is_up()
    lab.up()
    yield lab
    if not was_up:
        lab.down()


class Domain:
    """The example domain (xml/examples/lab-virtio-vga.xml) on the lab's hosts."""

    name = DOMAIN
    xml = DOMAIN_XML  # as seen inside the hosts

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def start(self, host: str = "h1") -> None:
        self.lab.host(host).virsh("create", self.xml)

    def where(self) -> list[str]:
        """Hosts on which the domain is running."""
        return [h.name for h in self.lab.hosts.values()
                if h.virsh("domstate", self.name, check=False).stdout.strip() == "running"]

    def qmp(self, host: str, command: str) -> object:
        """A QMP command through libvirt; returns its "return" value."""
        out = self.lab.host(host).virsh("qemu-monitor-command", self.name,
                                        json.dumps({"execute": command})).stdout
        return json.loads(out)["return"]

    def migrate(self, source: str, dest: str, *options: str) -> float:
        """Live-migrate with virsh inside source to qemu+ssh://DEST/system; seconds taken."""
        uri = f"qemu+ssh://{self.lab.host(dest).address}/system"
        began = time.monotonic()
        self.lab.host(source).virsh("migrate", "--live", *options, self.name, uri)
        return time.monotonic() - began

    def destroy(self) -> None:
        for host in self.lab.hosts.values():
            if host.running:
                host.virsh("destroy", self.name, check=False)


@pytest.fixture
def domain(lab: Lab) -> Iterator[Domain]:
    """The example domain, not running anywhere at the start and destroyed at the end."""
    dom = Domain(lab)
    dom.destroy()
    yield dom
    dom.destroy()
