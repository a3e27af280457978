"""Per-host configuration, written into a host's overlay upper layer before it starts."""
from __future__ import annotations

import os
from pathlib import Path

from lab import config, keys
from lab.config import HostSpec


def libvirtd_conf(spec: HostSpec) -> str:
    """libvirtd.conf: own host UUID, root-only unix socket without polkit."""
    return (f'host_uuid = "{spec.host_uuid}"\n'
            'auth_unix_ro = "none"\n'
            'auth_unix_rw = "none"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')


def qemu_conf(spec: HostSpec) -> str:
    """qemu.conf: no systemd, cgroups or namespaces; migrations on the host's own address."""
    low, high = spec.migration_ports
    return ('user = "root"\n'
            'group = "root"\n'
            'security_driver = "none"\n'
            'cgroup_controllers = [ ]\n'
            'namespaces = [ ]\n'
            f'migration_address = "{spec.address}"\n'
            f'migration_host = "{spec.address}"\n'
            f'migration_port_min = {low}\n'
            f'migration_port_max = {high}\n')


def sshd_config(spec: HostSpec) -> str:
    """sshd_config: the host's loopback address only, root by key only."""
    return (f"ListenAddress {spec.address}:22\n"
            "HostKey /etc/ssh/ssh_host_ed25519_key\n"
            "PidFile /run/sshd.pid\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "AcceptEnv LANG LC_*\n"
            "Subsystem sftp internal-sftp\n")


def etc_hosts() -> str:
    """/etc/hosts naming every lab host."""
    names = "".join(f"{spec.address}\t{spec.name}\n" for spec in config.HOSTS)
    return f"127.0.0.1\tlocalhost\n{names}"


def populate(spec: HostSpec, upper: Path, lower: Path, known_hosts: str) -> None:
    """Write the host's files into upper; new directories copy the lower layer's modes."""
    host_key = keys.host_key_path(spec.name)
    lab_key = config.LAB_KEY
    files = {
        "etc/hostname": (f"{spec.name}\n", 0o644),
        # ncdma honors its lab-only stand-in flag only where this marker is (ncdma.standin)
        "etc/ncdma-lab-host": (f"ncdma lab host {spec.name}: written by lab/hostfiles.py\n",
                               0o644),
        "etc/hosts": (etc_hosts(), 0o644),
        "etc/libvirt/libvirtd.conf": (libvirtd_conf(spec), 0o644),
        "etc/libvirt/qemu.conf": (qemu_conf(spec), 0o600),
        "etc/ssh/sshd_config": (sshd_config(spec), 0o644),
        "etc/ssh/ssh_host_ed25519_key": (_read(host_key), 0o600),
        "etc/ssh/ssh_host_ed25519_key.pub": (_read(_pub(host_key)), 0o644),
        "root/.ssh/authorized_keys": (_read(_pub(lab_key)), 0o600),
        "root/.ssh/id_ed25519": (_read(lab_key), 0o600),
        "root/.ssh/id_ed25519.pub": (_read(_pub(lab_key)), 0o644),
        "root/.ssh/known_hosts": (known_hosts, 0o644),
    }
    for rel in ("etc/libvirt/hooks/qemu.d", config.REPO_MOUNT.lstrip("/")):
        _makedirs(upper, lower, rel)
    for rel, (text, mode) in files.items():
        _makedirs(upper, lower, os.path.dirname(rel))
        path = upper / rel
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)


def _makedirs(upper: Path, lower: Path, rel: str) -> None:
    """Create upper/rel and its parents with the modes they have in lower (else 0700/0755)."""
    current = Path()
    for part in Path(rel).parts:
        current /= part
        target = upper / current
        if target.is_dir():
            continue
        source = lower / current
        if source.is_dir():
            mode = source.stat().st_mode & 0o7777
        else:
            mode = 0o700 if part == ".ssh" else 0o755
        target.mkdir()
        target.chmod(mode)


def _pub(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
