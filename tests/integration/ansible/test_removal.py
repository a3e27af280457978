"""Removal keeps VMs startable (issue 18): the role's ncdma_state=absent and
install-host --uninstall refuse, naming them, while defined domains opt in (their
<emulator> is ncdma's wrapper); with ncdma_disable_domains / --disable-domains they run
`ncdma disable` on each first (the definition restored exactly), then remove everything,
and the domain starts with its own QEMU."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from lab.install import build_wheels, install_ncdma
from lab.playbook import playbook
from ncdma.virt.xmldoc import canonical
from tests.integration.ansible.conftest import deploy
from tests.integration.ncdma.conftest import PREFIXES, REPO, OptedIn

pytestmark = pytest.mark.lab

HOOK = "etc/libvirt/hooks/qemu.d/50-ncdma"
UNINSTALL = ["/srv/ncdma/scripts/install-host", "--prefix", PREFIXES["h2"], "--uninstall"]



def _opt_in(vm: OptedIn, host: str) -> str:
    """Define the domain on ``host`` and enable ncdma on it; its definition before."""
    vm.define(host)
    before = vm.inactive_xml(host)
    vm.enable(host, "--bars", "vram")
    assert "ncdma-qemu" in vm.inactive_xml(host)
    return before


def _starts_with_its_own_qemu(vm: OptedIn, host: str, before: str) -> None:
    assert canonical(vm.inactive_xml(host)) == canonical(before)
    vm.lab.host(host).virsh("start", vm.name)
    assert vm.state(host) == "running"


def test_role_absent_refuses_while_a_domain_opts_in_then_disables_it(vm: OptedIn) -> None:
    deploy("--limit", "h1")
    h1 = vm.lab.host("h1")
    before = _opt_in(vm, "h1")
    refused = playbook("--limit", "h1", "-e", "ncdma_state=absent")
    assert refused.returncode != 0 and refused.recap["h1"]["failed"] == 1, refused.describe()
    assert "could not start without it: t-removal" in refused.output, refused.describe()
    assert (h1.root_path / HOOK).exists() and "ncdma-qemu" in vm.inactive_xml("h1")
    removed = deploy("--limit", "h1", "-e", "ncdma_state=absent",
                     "-e", "ncdma_disable_domains=true")
    assert removed.changed()["h1"] > 0
    assert not (h1.root_path / HOOK).exists()
    _starts_with_its_own_qemu(vm, "h1", before)


def test_install_host_uninstall_refuses_while_a_domain_opts_in_then_disables_it(
        vm: OptedIn) -> None:
    h2 = vm.lab.host("h2")
    with tempfile.TemporaryDirectory() as scratch:
        build_wheels(REPO, Path(scratch))
        install_ncdma(h2, Path(scratch), PREFIXES["h2"])
    before = _opt_in(vm, "h2")
    refused = h2.run(UNINSTALL, timeout=120)
    assert refused.returncode == 1, refused.stderr
    assert "could not start without it: t-removal; nothing was removed" in refused.stderr
    assert (h2.root_path / HOOK).exists() and "ncdma-qemu" in vm.inactive_xml("h2")
    done = h2.run([*UNINSTALL, "--disable-domains"], timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ncdma disabled on t-removal" in done.stdout
    assert not (h2.root_path / HOOK).exists()
    _starts_with_its_own_qemu(vm, "h2", before)
