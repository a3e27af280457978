"""Constants of the lab: what the root holds, where state lives, and the two hosts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
# Bump when the build steps in rootfs.py change in a way the package list does not show.
RECIPE_VERSION = 1
PACKAGES = (
    "qemu-system-x86",
    "qemu-system-data",
    "seabios",
    "ipxe-qemu",
    "libvirt-daemon",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "dmidecode",
    "python3",
    "python3-libvirt",
    "python3-lxml",
    "python3-venv",
    "python3-pip",
    "ca-certificates",
    "openssh-server",
    "iproute2",
    "procps",
)

CACHE_DIR = Path("/var/cache/ncdma-lab")
STATE_DIR = Path("/var/lib/ncdma-lab")
SSH_DIR = STATE_DIR / "ssh"
LAB_KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
LOCK_FILE = STATE_DIR / "lock"
REPO_MOUNT = "/srv/ncdma"

# PATH and environment given to every command run inside a host.
HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "LANG": "C.UTF-8",
}

UP_TIMEOUT = 60.0


@dataclass(frozen=True)
class HostSpec:
    """Fixed identity of one lab host."""

    name: str
    address: str
    host_uuid: str
    migration_ports: tuple[int, int]


HOSTS = (
    HostSpec("h1", "127.0.0.11", "6f3c2a1e-9b47-4d58-8e21-0c5a7b9d1e11", (49152, 49163)),
    HostSpec("h2", "127.0.0.12", "b2e84d07-1c6f-4a93-9d5e-3f7a0c2b8e12", (49164, 49175)),
)
