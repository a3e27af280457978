"""Benchmark of the libvirt hook, run exactly as libvirt runs it, against a bare interpreter.

Targets (issue 3): a domain without ncdma <= 50 ms per call; an opted-in domain <= 100 ms
per operation. Baseline: the same interpreter running an empty script that reads stdin.
Run: .venv/bin/python -m bench.hook
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.timing import Row, command, median_ms, print_rows

REPO = Path(__file__).parents[1]
WRAPPER = "/usr/local/libexec/ncdma/ncdma-qemu"


def install_hook(directory: Path) -> tuple[Path, dict[str, str]]:
    """The hook with its interpreter line set, and the environment libvirt gives it."""
    source = (REPO / "hooks/qemu.d/50-ncdma").read_text().splitlines(keepends=True)
    hook = directory / "50-ncdma"
    hook.write_text(f"#!{sys.executable}\n" + "".join(source[1:]))
    hook.chmod(0o755)
    config = directory / "ncdma.conf"
    config.write_text(f"[ncdma]\nstate_dir = {directory}/state\nlog_file = {directory}/log\n"
                      f"syslog = no\nwrapper = {WRAPPER}\n")
    return hook, {"LC_ALL": "C", "PATH": "/usr/bin:/bin", "NCDMA_CONFIG": str(config)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    plain = (REPO / "xml/examples/lab-virtio-vga.xml").read_bytes()
    opted_in = (REPO / "xml/examples/virtio-vga-opted-in.xml").read_bytes()
    with tempfile.TemporaryDirectory() as scratch:
        hook, env = install_hook(Path(scratch))
        empty = Path(scratch) / "empty.py"
        empty.write_text("import sys\nsys.stdin.buffer.read()\n")
        baseline = median_ms(command([sys.executable, str(empty)], plain, env), runs)
        rows: list[Row] = [
            ("baseline: empty Python hook", baseline, None),
            ("hook, domain without ncdma (prepare)",
             median_ms(command([str(hook), "d", "prepare", "begin", "-"], plain, env), runs), 50.0),
        ]
        for operation in ("prepare", "started", "migrate", "reconnect", "stopped"):
            rows.append(("baseline: empty Python hook", baseline, None))
            rows.append((f"hook, opted-in domain ({operation})",
                         median_ms(command([str(hook), "d", operation, "begin", "-"], opted_in,
                                           env), runs), 100.0))
    return print_rows(f"median of {runs} runs", rows)


if __name__ == "__main__":
    sys.exit(main())
