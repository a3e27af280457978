"""`ncdma install-files`: the files ncdma needs outside its Python package, installed from
the package data the wheel carries (``ncdma/data``) and from the parser itself.

Each is written only when its content or mode differs (atomically: a temporary file beside
it, then rename), and the answer lists what changed, so a tool can run it declaratively.
Paths are under ``root`` (default ``/``); the hook's interpreter and the unit's prefix are
the ones of the Python running this command (the virtual environment ncdma is in).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ncdma.cli.docs import bash_completion, manpage


@dataclass(frozen=True)
class InstalledFile:
    """One file ``install-files`` manages: where it goes, its content, its mode."""

    path: str  # absolute, as on the host
    content: str
    mode: int


def _data(name: str) -> str:
    return resources.files("ncdma").joinpath("data", name).read_text()


UNIT = "/etc/systemd/system/ncdma-guardd.service"


def wanted_files(parser: argparse.ArgumentParser, systemd: bool) -> list[InstalledFile]:
    """Every file, as this installation of ncdma wants it (``parser``: ncdma's own;
    ``systemd``: the guard service's unit too)."""
    hook = _data("50-ncdma").split("\n", 1)[1]
    unit = [InstalledFile(UNIT, _data("ncdma-guardd.service.in").replace("@PREFIX@",
                                                                          sys.prefix), 0o644)]
    return [
        InstalledFile("/etc/libvirt/hooks/qemu.d/50-ncdma", f"#!{sys.executable}\n{hook}", 0o755),
        *(unit if systemd else []),
        InstalledFile("/etc/logrotate.d/ncdma", _data("logrotate"), 0o644),
        InstalledFile("/usr/local/share/ncdma/ncdma-metadata.rng", _data("ncdma-metadata.rng"),
                      0o644),
        InstalledFile("/usr/local/share/doc/ncdma/ncdma.conf.example",
                      _data("ncdma.conf.example"), 0o644),
        InstalledFile("/usr/share/bash-completion/completions/ncdma", bash_completion(parser),
                      0o644),
        InstalledFile("/usr/local/share/man/man8/ncdma.8", manpage(parser), 0o644),
    ]


def _same(target: Path, wanted: InstalledFile) -> bool:
    try:
        return (target.read_text() == wanted.content
                and target.stat().st_mode & 0o7777 == wanted.mode)
    except (OSError, UnicodeDecodeError):
        return False


def remove_files(parser: argparse.ArgumentParser, root: Path) -> list[str]:
    """Remove every file ``install-files`` manages under ``root``; the paths removed.

    :raise OSError: When a file cannot be removed.
    """
    removed = []
    for wanted in wanted_files(parser, systemd=True):
        try:
            (root / wanted.path.lstrip("/")).unlink()
        except FileNotFoundError:
            continue
        removed.append(wanted.path)
    return removed


def install_files(parser: argparse.ArgumentParser, root: Path, systemd: bool) -> list[str]:
    """Write every file that differs under ``root``; the paths (as on the host) changed.

    :raise OSError: When a file cannot be written.
    """
    changed = []
    for wanted in wanted_files(parser, systemd):
        target = root / wanted.path.lstrip("/")
        if _same(target, wanted):
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(wanted.content)
            os.chmod(temporary, wanted.mode)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
        changed.append(wanted.path)
    return changed
