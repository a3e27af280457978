"""The guard service's systemd unit (issue 12): a template that renders, verifies, and is
hardened to an exposure of at most 4.0 by systemd's own measure (printed; bench/unit.py
prints it too)."""

from __future__ import annotations

import sys
from pathlib import Path

from lab.unit import TEMPLATE, analyze, exposure, render_unit

PREFIX = str(Path(sys.executable).parent.parent)  # this checkout's venv: bin/ncdma exists
MAX_EXPOSURE = 4.0


def test_only_the_template_is_shipped_and_it_verifies_once_rendered(tmp_path) -> None:
    assert TEMPLATE.exists(), "the unit template must carry the .in suffix"
    assert not [path for path in TEMPLATE.parent.iterdir()
                if path.suffix != ".in" and "@PREFIX@" in path.read_text()]
    unit = render_unit(PREFIX, tmp_path)
    assert "@PREFIX@" not in unit.read_text()
    done = analyze("verify", str(unit))
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_units_exposure_is_at_most_4(tmp_path) -> None:
    rating, report = exposure(render_unit(PREFIX, tmp_path))
    assert rating is not None, report
    print(f"ncdma-guardd.service exposure (systemd-analyze security): {rating}")
    assert rating <= MAX_EXPOSURE, report
