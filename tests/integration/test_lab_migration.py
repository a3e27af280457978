"""Live migration of the example domain from h1 to h2 and back, the ways operators do it."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.lab

# Extra `virsh migrate` options per way; the qemu+ssh URI goes through the lab's sshd.
WAYS = {
    # virsh (inside the source host) talks to both libvirtds; QEMU connects to the
    # destination's migration_host:port (qemu.conf), no migrate URI needed.
    "managed": [],
    # The source libvirtd itself opens the ssh connection to the destination.
    "p2p": ["--p2p"],
}


@pytest.mark.parametrize("way", WAYS)
def test_live_migration_there_and_back(domain, way: str) -> None:
    domain.start("h1")
    there = domain.migrate("h1", "h2", *WAYS[way])
    assert domain.where() == ["h2"]
    back = domain.migrate("h2", "h1", *WAYS[way])
    assert domain.where() == ["h1"]
    print(f"migration ({way}): h1->h2 {there:.2f} s, h2->h1 {back:.2f} s")


def test_live_migration_with_explicit_tcp_uri(domain) -> None:
    """The form FACTS.md recorded: migrate URI and listen address given by hand."""
    domain.start("h1")
    h2 = domain.lab.host("h2")
    port = h2.spec.migration_ports[1]
    domain.migrate("h1", "h2", "--migrateuri", f"tcp://{h2.address}:{port}",
                   "--listen-address", h2.address)
    assert domain.where() == ["h2"]
