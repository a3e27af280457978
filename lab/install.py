"""Install ncdma into the lab's hosts the way an operator does: scripts/install-host.

The hosts reach no package index of their own in the tests' view, so ncdma and the
dependencies Debian 13 does not ship (qemu.qmp, tenacity) are built here as wheels and
copied into each host's /tmp; libvirt-python and lxml come from Debian (the venv sees
the system site-packages).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lab.errors import LabError
from lab.host import Host
from lab.preload import build_preload

FLEET_WRAPPER = "/usr/local/libexec/ncdma/ncdma-qemu"
_WHEELS_IN_HOST = "/tmp/ncdma-wheels"


def build_wheels(repo: Path, directory: Path, python: str = sys.executable) -> None:
    """ncdma from ``repo`` and its PyPI-only dependencies, as wheels in ``directory``."""
    subprocess.run([python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(directory),
                    str(repo), "qemu.qmp", "tenacity"], check=True,
                   stderr=subprocess.DEVNULL)


def install_ncdma(host: Host, wheels: Path, prefix: str = "/opt/ncdma",
                  stand_in: bool = False) -> None:
    """Run scripts/install-host inside ``host`` from ``wheels``; libvirtd is reloaded.
    ``stand_in``: enforce mode with the lab's stand-in flag (install-host --lab-stand-in)."""
    target = host.root_path / _WHEELS_IN_HOST.lstrip("/")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(wheels, target)
    build_preload(target)  # the lab's hosts have no compiler: install-host takes it from there
    done = host.run(["/srv/ncdma/scripts/install-host", "--prefix", prefix,
                     "--wheels", _WHEELS_IN_HOST, *(["--lab-stand-in"] if stand_in else [])],
                    timeout=300)
    if done.returncode != 0:
        raise LabError(f"installing ncdma on {host.name} failed: {done.stderr.strip()}")
    host.reload_libvirtd()


def uninstall_ncdma(host: Host, prefix: str = "/opt/ncdma") -> None:
    """Remove ncdma and its configuration, state and logs from ``host`` (domains a test left
    opted in are opted out first)."""
    host.run(["/srv/ncdma/scripts/install-host", "--prefix", prefix, "--uninstall",
              "--disable-domains"], timeout=60)
    host.run(["rm", "-rf", "/etc/ncdma", "/run/ncdma", "/var/log/ncdma"])
