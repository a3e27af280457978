"""Fixtures of the Ansible tests: the role deployed on the lab's hosts, and host snapshots."""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab, config
from lab.host import Host
from lab.playbook import Run, playbook
from tests.integration.ncdma.conftest import MODES, OptedIn

# What an SSH login and Ansible's own machinery write on any run, whatever the play does:
# Ansible's remote temporary directory and sshd's login records.
SESSION_FILES = ("root/.ansible", "var/log/lastlog", "var/log/wtmp", "var/log/wtmp.db",
                 "var/log/btmp")


def _describe(path: Path) -> str:
    info = path.lstat()
    kind = stat.S_IFMT(info.st_mode)
    mode = f"{stat.S_IMODE(info.st_mode):o} {info.st_uid}:{info.st_gid}"
    if kind == stat.S_IFREG:
        return f"file {mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    if kind == stat.S_IFLNK:
        return f"link -> {os.readlink(path)}"
    if kind == stat.S_IFCHR:  # overlayfs whiteout: a file of the lower layer was deleted
        return f"char {os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
    return f"{stat.filemode(info.st_mode)[0]} {mode}"


def host_files(host: Host) -> dict[str, str]:
    """Every file the host has written since it started: its overlay's upper layer and its
    tmpfs mounts (/run, /tmp, /dev/shm), by path, with type, mode, owner and content."""
    tops = {"": config.STATE_DIR / host.name / "upper",
            **{name: host.root_path / name for name in ("run", "tmp", "dev/shm")}}
    found: dict[str, str] = {}
    for prefix, top in tops.items():
        for directory, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = Path(directory, name)
                relative = str(Path(prefix, path.relative_to(top)))
                if not relative.startswith(SESSION_FILES):
                    found[relative] = _describe(path)
    return found


def deploy(*args: str) -> Run:
    """site.yml on both lab hosts; fails the test, with Ansible's output, if it fails."""
    done = playbook(*args)
    assert done.returncode == 0 and done.recap, done.describe()
    return done


class Mode:
    """The mode the role deploys the lab in: audit (this kernel rejects the flag), or enforce
    with the lab's stand-in flag (ncdma_lab_stand_in=true)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.enforce = name == "enforce"
        self.args = ("-e", "ncdma_lab_stand_in=true") if self.enforce else ()

    @property
    def says(self) -> str:
        """What the role's verify step says about the mode on each host."""
        return ("ncdma runs in enforce mode (lab stand-in flag 0x2); with the real flag it "
                "would run audit mode" if self.enforce else "ncdma runs in audit mode")

    def deploy(self, *args: str) -> Run:
        """site.yml on both lab hosts in this mode."""
        return deploy(*self.args, *args)

    def playbook(self, *args: str) -> Run:
        """site.yml in this mode, whatever its outcome."""
        return playbook(*self.args, *args)


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """Each test that deploys runs once per mode (the lab's hosts behave differently)."""
    return Mode(request.param)


def remove_everywhere() -> Run:
    """ncdma_state=absent with purge on both hosts: no file of ncdma left (domains a test
    left opted in are opted out first)."""
    return deploy("-e", "ncdma_state=absent", "-e", "ncdma_purge=true",
                  "-e", "ncdma_disable_domains=true")


@pytest.fixture(scope="module")
def clean_lab(lab: Lab) -> Iterator[Lab]:
    """The lab without ncdma at the start and at the end of the module."""
    remove_everywhere()
    yield lab
    if all(host.running for host in lab.hosts.values()):
        remove_everywhere()


@pytest.fixture
def vm(clean_lab: Lab, request: pytest.FixtureRequest) -> Iterator[OptedIn]:
    """A domain named after the test module (test_removal: t-removal), defined nowhere yet,
    and removed from both hosts at the end."""
    domain = OptedIn(clean_lab, "t-" + request.module.__name__.rsplit("_", 1)[-1])
    domain.remove()
    yield domain
    domain.remove()
