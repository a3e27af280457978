"""One lab host: its namespace's pid 1, its lifecycle, and ways to run commands in it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lab import config, hostfiles, netcheck
from lab.config import HostSpec
from lab.errors import LabError, tail
from lab.fsutil import remove_tree

LAB_CODE = Path(__file__).resolve().parent.parent


class Host:
    """A lab host, found by its pid 1 (`python -m lab.init NAME ...` in its own pid namespace)."""

    def __init__(self, spec: HostSpec, repo: Path) -> None:
        self.spec = spec
        self.repo = repo
        self.state_dir = config.STATE_DIR / spec.name
        self._pid: int | None = None
        self._launcher: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def pid(self) -> int | None:
        """Pid (in this namespace) of the host's init, or None when it is not running."""
        if self._pid is None or _init_argv(self._pid, self.name) is None:
            found = _find_inits(self.name)
            self._pid = found[0] if found else None
        return self._pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def serves(self, root: Path) -> bool:
        """True if the host runs on root with this checkout mounted at /srv/ncdma."""
        pid = self.pid
        argv = _init_argv(pid, self.name) if pid else None
        return argv is not None and argv[4:6] == [str(root), str(self.repo)]

    @property
    def root_path(self) -> Path:
        """The host's / seen from outside."""
        return Path(f"/proc/{self._require_pid()}/root")

    @property
    def uri(self) -> str:
        """libvirt URI of the host's libvirtd, usable from outside the host."""
        return (f"qemu+unix:///system?socket=/proc/{self._require_pid()}"
                "/root/run/libvirt/libvirt-sock")

    def nsenter_argv(self, cmd: Sequence[str]) -> list[str]:
        """argv that runs cmd inside the host as root, with a clean environment."""
        env = dict(config.HOST_ENV)
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
        return ["nsenter", "-t", str(self._require_pid()), "-m", "-u", "-p", "-r", "-w", "--",
                "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd]

    def run(self, cmd: Sequence[str], *, check: bool = False, capture: bool = True,
            input: str | None = None, timeout: float | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run cmd inside the host; text output captured unless capture is False."""
        return subprocess.run(self.nsenter_argv(cmd), check=check, capture_output=capture,
                              text=True, input=input, timeout=timeout)

    def ssh_argv(self, *cmd: str) -> list[str]:
        """argv of an ssh to root on this host with the lab key and the lab's known_hosts."""
        return ["ssh", "-i", str(config.LAB_KEY), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={config.KNOWN_HOSTS}", "-o", "ConnectTimeout=5",
                "-o", "LogLevel=ERROR", f"root@{self.address}", *cmd]

    def virsh(self, *args: str, check: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run virsh against the host's own libvirtd, inside the host."""
        return self.run(["virsh", "-c", "qemu:///system", *args], check=check, timeout=timeout)

    def libvirt_answers(self) -> bool:
        try:
            return self.virsh("version", check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def ssh_answers(self) -> bool:
        try:
            return subprocess.run(self.ssh_argv("true"), capture_output=True, timeout=15,
                                  check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def healthy(self) -> bool:
        """Init alive, libvirtd answering, sshd accepting the lab key."""
        return self.running and self.libvirt_answers() and self.ssh_answers()

    def versions(self) -> dict[str, str]:
        """libvirt and QEMU versions as `virsh version` reports them."""
        names = {"Using library": "libvirt", "Running hypervisor": "qemu"}
        found = {}
        for line in self.virsh("version", timeout=10).stdout.splitlines():
            label, _, value = line.partition(":")
            if label.strip() in names:
                found[names[label.strip()]] = value.split()[-1]
        return found

    def reload_libvirtd(self) -> None:
        """SIGHUP libvirtd (it rereads hooks and configs) and wait until it answers."""
        self.run(["sh", "-c", 'kill -HUP "$(cat /run/libvirtd.pid)"'], check=True)
        self._wait(time.monotonic() + 30, self.libvirt_answers, "libvirtd after SIGHUP")

    def start(self, lower: Path, known_hosts: str) -> None:
        """Start the host afresh (killing any earlier one); wait for its init, not its daemons."""
        self.stop()
        low, high = self.spec.migration_ports
        taken = netcheck.busy(self.address, [22, *range(low, high + 1)])
        if taken:
            raise LabError(f"{self.name}: something on this machine already listens on "
                           + ", ".join(f"{a}:{p}" for a, p in taken)
                           + "; stop it or change the host's address/ports in lab/config.py")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        upper, work = self.state_dir / "upper", self.state_dir / "work"
        for path in (upper, work):
            remove_tree(path)
            path.mkdir()
        (self.state_dir / "root").mkdir(exist_ok=True)
        hostfiles.populate(self.spec, upper, lower, known_hosts)
        argv = ["unshare", "-m", "-u", "-p", "-f", "--propagation", "private", "--",
                sys.executable, "-m", "lab.init", self.name, str(lower), str(self.repo)]
        with open(self.state_dir / "init.log", "wb") as log:
            self._launcher = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd="/", env={**config.HOST_ENV, "PYTHONPATH": str(LAB_CODE)},
                start_new_session=True)
        self._pid = None
        deadline = time.monotonic() + 10
        while not self.running:
            if self._launcher.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"{self.name}: init did not start; see "
                               f"{self.state_dir / 'init.log'}:\n"
                               + tail(self.state_dir / "init.log"))
            time.sleep(0.02)

    def wait_ready(self, deadline: float) -> None:
        """Wait until libvirtd answers and sshd accepts the lab key."""
        self._wait(deadline, self.libvirt_answers, "libvirtd")
        self._wait(deadline, self.ssh_answers, "sshd")

    def stop(self) -> None:
        """Kill the host's pid 1 (ending all in its namespace and its mounts) and wait."""
        for pid in _find_inits(self.name):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while _alive(pid):
                if time.monotonic() > deadline:
                    raise LabError(f"{self.name}: pid {pid} survived SIGKILL for 30 s")
                time.sleep(0.05)
        if self._launcher is not None:
            self._launcher.wait(timeout=30)
            self._launcher = None
        self._pid = None

    def _wait(self, deadline: float, probe: Callable[[], bool], what: str) -> None:
        while not probe():
            if not self.running:
                raise LabError(f"{self.name}: init exited; see {self.state_dir / 'init.log'}:\n"
                               + tail(self.state_dir / "init.log"))
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: {what} not answering in time; see "
                               f"{self.state_dir / 'init.log'} and "
                               f"{self.state_dir / 'upper/var/log/libvirt'}")
            time.sleep(0.2)

    def _require_pid(self) -> int:
        pid = self.pid
        if pid is None:
            raise LabError(f"{self.name} is not running; run `python3 -m lab up`")
        return pid


def _init_argv(pid: int, name: str) -> list[str] | None:
    """argv of pid if it is host name's init (pid 1 of its own namespace), else None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        if argv[1:4] != ["-m", "lab.init", name]:
            return None
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    nspid = fields.get("NSpid", "").split()
    if fields.get("State", "").startswith("Z") or len(nspid) < 2 or nspid[-1] != "1":
        return None
    return argv


def _find_inits(name: str) -> list[int]:
    """Every live init of host name, including ones left by a crashed lab run."""
    pids = (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    return [pid for pid in pids if _init_argv(pid, name) is not None]


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
