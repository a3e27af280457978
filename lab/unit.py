"""The guard service's systemd unit as installed, and systemd's own verdicts on it.

install-host and the Ansible role render ``data/systemd/ncdma-guardd.service.in`` by
replacing @PREFIX@; this does the same, then asks ``systemd-analyze`` (Debian's systemd
package) to verify it and to rate its exposure (``security --offline=yes``). The unit's
``Documentation=man:ncdma(8)`` is checked by verify: the man page is installed with it
(``ncdma manpage``), here into the directory beside the unit (MANPATH).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ncdma.cli.docs import manpage
from ncdma.cli.main import build_parser

TEMPLATE = Path(__file__).resolve().parents[1] / "data/systemd/ncdma-guardd.service.in"


def render_unit(prefix: str, directory: Path) -> Path:
    """The unit with ``prefix``, written as ``directory``/ncdma-guardd.service, and its man
    page as ``directory``/man/man8/ncdma.8 (see :func:`analyze`)."""
    unit = directory / "ncdma-guardd.service"
    unit.write_text(TEMPLATE.read_text().replace("@PREFIX@", prefix))
    (directory / "man" / "man8").mkdir(parents=True, exist_ok=True)
    (directory / "man" / "man8" / "ncdma.8").write_text(manpage(build_parser()))
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze ARGS``; a missing tool is an AssertionError that says what to do.
    The man page rendered beside a unit in ARGS is on its MANPATH."""
    pages = [str(Path(arg).parent / "man") for arg in args if arg.endswith(".service")]
    env = {**os.environ, "MANPATH": ":".join(pages)} if pages else None
    try:
        return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                              timeout=60, check=False, env=env)
    except FileNotFoundError:
        raise AssertionError("systemd-analyze is missing: install Debian's systemd package "
                             "(scripts/bootstrap does)") from None


def exposure(unit: Path) -> tuple[float | None, str]:
    """systemd's exposure rating of ``unit`` (0 safest, 10 worst), and its full report."""
    done = analyze("security", "--offline=yes", str(unit))
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    return (float(found.group(1)) if found else None), done.stdout + done.stderr
