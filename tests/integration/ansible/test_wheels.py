"""The role installs from a directory of wheels (ncdma_wheel_dir), the ncdma wheel of
ncdma_version; a version the directory does not hold fails before the host changes."""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab
from lab.install import build_wheels
from lab.playbook import playbook
from tests.integration.ansible.conftest import deploy, host_files
from tests.integration.ncdma.conftest import REPO

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def wheels() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as scratch:
        build_wheels(REPO, Path(scratch))
        yield Path(scratch)


def _version(wheels: Path) -> str:
    (ncdma,) = wheels.glob("ncdma-*.whl")
    return ncdma.name.split("-")[1]


def test_role_installs_the_pinned_version_from_a_wheel_directory(clean_lab: Lab,
                                                                 wheels: Path) -> None:
    h1 = clean_lab.host("h1")
    version = _version(wheels)
    deploy("--limit", "h1", "-e", f"ncdma_wheel_dir={wheels}", "-e", f"ncdma_version={version}")
    assert h1.run(["/opt/ncdma/bin/ncdma", "--version"]).stdout.split() == ["ncdma", version]
    before = host_files(h1)
    missing = playbook("--limit", "h1", "-e", f"ncdma_wheel_dir={wheels}",
                       "-e", "ncdma_version=0.0.1")
    assert missing.returncode != 0, missing.describe()
    assert "for ncdma_version '0.0.1': exactly one is needed" in missing.output
    assert host_files(h1) == before
