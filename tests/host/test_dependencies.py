"""ncdma's dependency floors (setup.cfg) against what Debian 12 (this machine's apt) and
Debian 13 (the lab's root, lab.rootfs) package: what the venv takes from Debian must satisfy
the floor on both; what Debian cannot give comes as wheels (the role and lab.install build
them), and Debian 12's tenacity 8.2.1, which lacks stop_before_delay, is below its floor."""

from __future__ import annotations

import configparser
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import tenacity
from packaging.requirements import Requirement
from packaging.version import Version

from lab import rootfs

REPO = Path(__file__).resolve().parents[2]
# The venv sees Debian's site-packages (--system-site-packages): these come from Debian.
FROM_DEBIAN = {"libvirt-python": "python3-libvirt", "lxml": "python3-lxml"}
# Built as wheels by the role (tasks/install.yml) and lab.install.build_wheels.
FROM_WHEELS = {"qemu.qmp", "tenacity"}


def requirements() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].split("\n")
    return {Requirement(line).name: Requirement(line) for line in lines if line.strip()}


def _upstream(debian_version: str) -> Version:
    """4.9.2-1+deb12u1 -> 4.9.2 (epoch and Debian revision dropped)."""
    return Version(re.sub(r"^\d+:", "", debian_version).rsplit("-", 1)[0])


def debian12(package: str) -> Version:
    policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True,
                            check=True).stdout
    found = re.search(r"Candidate: (\S+)", policy)
    assert found and found.group(1) != "(none)", f"apt knows no {package}: run apt-get update"
    return _upstream(found.group(1))


def debian13(package: str) -> Version:
    root = rootfs.root_path()
    assert root.is_dir(), f"the lab's Debian 13 root is not built ({root}): run scripts/test"
    done = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                           "-f=${Version}", package], capture_output=True, text=True, check=True)
    return _upstream(done.stdout)


def test_every_dependency_has_a_floor_and_a_source() -> None:
    found = requirements()
    assert set(found) == set(FROM_DEBIAN) | FROM_WHEELS
    for name, requirement in found.items():
        assert [spec.operator for spec in requirement.specifier] == [">="], name


@pytest.mark.parametrize("name", sorted(FROM_DEBIAN))
@pytest.mark.parametrize("release", [debian12, debian13], ids=["debian12", "debian13"])
def test_debian_packages_satisfy_the_floors(name: str, release) -> None:
    packaged = release(FROM_DEBIAN[name])
    assert requirements()[name].specifier.contains(packaged), (name, packaged)


def test_debian12_tenacity_is_below_the_floor_that_has_stop_before_delay() -> None:
    specifier = requirements()["tenacity"].specifier
    assert debian12("python3-tenacity") == Version("8.2.1")
    assert not specifier.contains(Version("8.2.1"))
    assert specifier.contains(Version(version("tenacity")))  # the one the tests run with
    assert hasattr(tenacity, "stop_before_delay")
