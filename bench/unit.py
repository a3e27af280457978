"""The guard service unit's exposure as systemd rates it (issue 12 target: at most 4.0).

Renders data/systemd/ncdma-guardd.service.in with this checkout's prefix and prints
`systemd-analyze security --offline=yes`'s rating and `systemd-analyze verify`'s verdict.
Run: .venv/bin/python -m bench.unit
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lab.unit import analyze, exposure, render_unit

TARGET = 4.0


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        unit = render_unit(str(Path(sys.executable).parent.parent), Path(directory))
        rating, report = exposure(unit)
        verified = analyze("verify", str(unit))
    if rating is None:
        print(report)
        return 1
    print(f"ncdma-guardd.service exposure: {rating} (target <= {TARGET}; 10 = unsandboxed)")
    print(f"systemd-analyze verify: {'ok' if verified.returncode == 0 else verified.stderr}")
    return 0 if rating <= TARGET and verified.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
