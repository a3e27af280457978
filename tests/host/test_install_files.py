"""The wheel carries what ncdma needs outside Python (issue 18): a wheel built from this
checkout, installed into a fresh virtual environment, installs the hook, unit, logrotate
rules, schema, sample settings, completion and man page with `ncdma install-files`, says
what changed, and changes nothing the second time."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from ncdma.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DATA = {"50-ncdma", "ncdma-guardd.service.in", "logrotate", "ncdma-metadata.rng",
        "ncdma.conf.example"}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_wheel_installs_its_files(tmp_path: Path) -> None:
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"),
         str(REPO))
    (wheel,) = (tmp_path / "w").glob("ncdma-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"ncdma/data/{name}" for name in DATA} <= names
    assert any(name.endswith("/licenses/LICENSE") for name in names)
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    _run(str(venv / "bin/pip"), "install", "-q", "--no-deps", str(wheel))
    root = tmp_path / "root"
    first = json.loads(_run(str(venv / "bin/ncdma"), "install-files", "--root", str(root),
                            "--systemd", "yes", "--json").stdout)
    assert len(first["changed"]) == 7
    hook = root / "etc/libvirt/hooks/qemu.d/50-ncdma"
    assert hook.read_text().startswith(f"#!{venv}/bin/python")
    assert hook.stat().st_mode & 0o777 == 0o755
    unit = (root / "etc/systemd/system/ncdma-guardd.service").read_text()
    assert f"ExecStart={venv}/bin/ncdma guardd" in unit and "@PREFIX@" not in unit
    assert (root / "usr/local/share/ncdma/ncdma-metadata.rng").read_text() == \
        (REPO / "xml/ncdma-metadata.rng").read_text()
    assert load_settings(root / "usr/local/share/doc/ncdma/ncdma.conf.example").flag == 0x8
    assert (root / "usr/local/share/man/man8/ncdma.8").read_text().startswith(".TH NCDMA 8")
    again = json.loads(_run(str(venv / "bin/ncdma"), "install-files", "--root", str(root),
                            "--systemd", "yes", "--json").stdout)
    assert again["changed"] == []
    hook.write_text("#!/bin/sh\nexit 0\n")
    assert json.loads(_run(str(venv / "bin/ncdma"), "install-files", "--root", str(root),
                           "--systemd", "yes", "--json").stdout)["changed"] == [
        "/etc/libvirt/hooks/qemu.d/50-ncdma"]
    removed = json.loads(_run(str(venv / "bin/ncdma"), "install-files", "--root", str(root),
                              "--remove", "--json").stdout)["changed"]
    assert sorted(removed) == sorted(first["changed"])
    assert not [path for path in root.rglob("*") if path.is_file()]
