"""ansible-playbook, from this Python's environment, against the lab's two hosts.

Used by tests/integration/ansible and by bench/ansible.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "ansible"
LAB_INVENTORY = ANSIBLE_DIR / "inventory.lab.yml"
BIN = Path(sys.executable).parent
_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    """One finished run of an Ansible command."""

    argv: list[str]
    returncode: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP's counters per host, e.g. {"h1": {"ok": 27, "changed": 0, ...}}."""
        recap = self.output.rpartition("PLAY RECAP")[2]
        return {host: {key: int(value) for key, value in
                       (pair.split("=") for pair in counters.split())}
                for host, counters in _RECAP_LINE.findall(recap)}

    def changed(self) -> dict[str, int]:
        return {host: counters["changed"] for host, counters in self.recap.items()}

    def describe(self) -> str:
        """The command and the end of its output, for an assertion's message."""
        return f"$ {' '.join(self.argv)}\n(exit status {self.returncode})\n{self.output[-6000:]}"


def environment() -> dict[str, str]:
    """This checkout's ansible.cfg, this environment's programs first, no colours."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0"}


def run(program: str, *args: str, timeout: float = 900) -> Run:
    """Run ``program`` (ansible-playbook, ansible, ansible-lint) in ansible/."""
    argv = [str(BIN / program), *args]
    began = time.monotonic()
    done = subprocess.run(argv, cwd=ANSIBLE_DIR, env=environment(), capture_output=True,
                          text=True, timeout=timeout, check=False)
    return Run(argv, done.returncode, done.stdout + done.stderr, time.monotonic() - began)


def playbook(*args: str, timeout: float = 900) -> Run:
    """site.yml against the lab inventory, with extra ansible-playbook arguments."""
    return run("ansible-playbook", "-i", str(LAB_INVENTORY), "site.yml", *args,
               timeout=timeout)


def ping() -> Run:
    """The baseline: Ansible's ping module on both lab hosts."""
    return run("ansible", "-i", str(LAB_INVENTORY), "ncdma_hosts", "-m", "ansible.builtin.ping")
