"""Each lab host is a separate libvirt host: own name, UUID, address, sshd, read-only repo."""
from __future__ import annotations

import socket
import stat
import subprocess

import pytest

from lab import config

pytestmark = pytest.mark.lab


def test_hosts_have_their_own_identity(lab) -> None:
    for spec in config.HOSTS:
        host = lab.host(spec.name)
        assert host.run(["hostname"], check=True).stdout.strip() == spec.name
        caps = host.virsh("capabilities").stdout
        assert f"<uuid>{spec.host_uuid}</uuid>" in caps


def test_versions(lab) -> None:
    for host in lab.hosts.values():
        versions = host.versions()
        assert versions["libvirt"].startswith("11.")
        assert versions["qemu"].startswith("10.")


def test_libvirt_socket_reachable_from_outside(lab) -> None:
    """h.uri points at this socket; it accepts connections from this namespace."""
    for host in lab.hosts.values():
        path = host.root_path / "run/libvirt/libvirt-sock"
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert host.uri.endswith(f"socket={path}")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))


def test_ssh_with_the_lab_key(lab) -> None:
    h1, h2 = lab.host("h1"), lab.host("h2")
    for host in (h1, h2):
        out = subprocess.run(host.ssh_argv("hostname"), capture_output=True, text=True,
                             check=True, timeout=30).stdout
        assert out.strip() == host.name
    # Host to host, as libvirt's qemu+ssh does: root's own key and known_hosts.
    out = h1.run(["ssh", "-o", "BatchMode=yes", f"root@{h2.address}", "hostname"],
                 check=True, timeout=30).stdout
    assert out.strip() == "h2"


def test_sshd_listens_only_on_the_host_address(lab) -> None:
    for host in lab.hosts.values():
        # Inside the host, ss -p names only the host's own processes.
        out = host.run(["ss", "-Hltnp"], check=True).stdout
        own = {line.split()[3] for line in out.splitlines() if '"sshd"' in line}
        assert own == {f"{host.address}:22"}


def test_repo_is_mounted_read_only(lab) -> None:
    h1 = lab.host("h1")
    assert h1.run(["test", "-f", f"{config.REPO_MOUNT}/lab/__init__.py"]).returncode == 0
    result = h1.run(["touch", f"{config.REPO_MOUNT}/.lab-write-test"])
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
