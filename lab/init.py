"""Pid 1 of a lab host: mount its root, start its daemons, then reap orphans until killed.

Host.start runs it as `unshare -m -u -p -f --propagation private -- python3 -m lab.init
NAME LOWER REPO`. Everything it needs is imported before the chroot, after which the outer
Python's files are out of reach. Its output goes to /var/lib/ncdma-lab/NAME/init.log.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lab import config

SERVICES = (["virtlogd", "-d"], ["libvirtd", "-d"], ["/usr/sbin/sshd"])
RUNTIME_DIRS = ("/run/sshd", "/run/lock", "/var/log/libvirt/qemu", "/var/lib/libvirt/qemu")


def mount_root(name: str, lower: str, repo: str) -> Path:
    """Mount the host's root at /var/lib/ncdma-lab/NAME/root in this private namespace."""
    state = config.STATE_DIR / name
    root = state / "root"
    overlay = f"lowerdir={lower},upperdir={state / 'upper'},workdir={state / 'work'}"
    tmpfs = "nosuid,nodev,mode="
    steps = [
        ["mount", "-t", "overlay", "overlay", "-o", overlay, str(root)],
        ["mount", "-t", "proc", "proc", f"{root}/proc"],
        ["mount", "-t", "sysfs", "sysfs", f"{root}/sys"],
        ["mount", "--rbind", "/dev", f"{root}/dev"],
        ["mount", "-t", "tmpfs", "-o", tmpfs + "1777", "tmpfs", f"{root}/dev/shm"],
        ["mount", "-t", "tmpfs", "-o", tmpfs + "755", "tmpfs", f"{root}/run"],
        ["mount", "-t", "tmpfs", "-o", tmpfs + "1777", "tmpfs", f"{root}/tmp"],
        ["mount", "--bind", "-o", "ro", repo, f"{root}{config.REPO_MOUNT}"],
    ]
    for argv in steps:
        subprocess.run(argv, check=True)
    return root


def start_services() -> None:
    """Create the runtime directories and start virtlogd, libvirtd and sshd."""
    for path in RUNTIME_DIRS:
        os.makedirs(path, exist_ok=True)
    for argv in SERVICES:
        began = time.monotonic()
        subprocess.run(argv, check=True, env=config.HOST_ENV, stdin=subprocess.DEVNULL)
        print(f"init: started {argv[0]} in {time.monotonic() - began:.2f} s", flush=True)


def reap_forever() -> None:
    """Reap every child (daemons are reparented here); never returns."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        signal.sigwaitinfo({signal.SIGCHLD})


def main(argv: list[str]) -> None:
    """Set up the host named argv[0] over the root argv[1] with the repo argv[2]."""
    name, lower, repo = argv
    root = mount_root(name, lower, repo)
    socket.sethostname(name)
    os.chroot(root)
    os.chdir("/")
    start_services()
    print("init: ready", flush=True)
    reap_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
