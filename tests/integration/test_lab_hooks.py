"""libvirt runs the hooks in /etc/libvirt/hooks/qemu.d on both sides of a migration."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.lab

HOOK = "etc/libvirt/hooks/qemu.d/50-lab-test"
LOG = "var/log/lab-hook.log"
SCRIPT = f'#!/bin/sh\ncat >/dev/null\necho "$*" >> /{LOG}\n'


@pytest.fixture
def hooks(lab):
    """A logging hook on every host (libvirtd reloaded to see it); removed afterwards."""
    for host in lab.hosts.values():
        (host.root_path / LOG).unlink(missing_ok=True)
        hook = host.root_path / HOOK
        hook.write_text(SCRIPT, encoding="utf-8")
        hook.chmod(0o755)
        host.reload_libvirtd()
    yield
    for host in lab.hosts.values():
        (host.root_path / HOOK).unlink()
        host.reload_libvirtd()


def calls(host, domain_name: str) -> list[str]:
    """`operation sub-operation` of every hook call for the domain, in order."""
    path = host.root_path / LOG
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [" ".join(line.split()[1:3]) for line in lines if line.split()[0] == domain_name]


def wait_calls(host, domain_name: str, expected: list[str]) -> None:
    deadline = time.monotonic() + 10
    while calls(host, domain_name) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert calls(host, domain_name) == expected


def test_hooks_run_on_start_and_on_both_sides_of_a_migration(lab, hooks, domain) -> None:
    h1, h2 = lab.host("h1"), lab.host("h2")
    domain.start("h1")
    started = ["prepare begin", "start begin", "started begin"]
    wait_calls(h1, domain.name, started)
    domain.migrate("h1", "h2")
    wait_calls(h2, domain.name, ["migrate begin", *started])
    wait_calls(h1, domain.name, [*started, "stopped end", "release end"])
