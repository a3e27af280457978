"""The two-host lab as a whole: up, down, status, under one lock."""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from lab import config, keys, rootfs
from lab.errors import LabError
from lab.host import Host

# A healthy lab usually comes up well within config.UP_TIMEOUT; this is when to give up.
UP_DEADLINE = 2 * config.UP_TIMEOUT


class Lab:
    """Both lab hosts of the checkout at repo_root (mounted read-only at /srv/ncdma)."""

    def __init__(self, repo_root: Path | str) -> None:
        self.repo = Path(repo_root).resolve()
        self.hosts = {spec.name: Host(spec, self.repo) for spec in config.HOSTS}

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(f"no host {name!r}; hosts: {', '.join(self.hosts)}") from None

    def is_up(self) -> bool:
        """Every host runs on the current root with this checkout and is healthy."""
        root = rootfs.root_path()
        return all(h.serves(root) and h.healthy() for h in self.hosts.values())

    def up(self) -> bool:
        """Bring up every host that is not running healthy; True if any was started."""
        check_requirements()
        began = time.monotonic()
        with locked():
            root = rootfs.ensure_root()
            known_hosts = keys.ensure_all()
            todo = [h for h in self.hosts.values() if not (h.serves(root) and h.healthy())]
            for host in self.hosts.values():
                if host not in todo:
                    print(f"lab: {host.name} already up (pid {host.pid})", flush=True)
            if not todo:
                return False
            start = time.monotonic()
            for host in todo:
                host.start(root, known_hosts)
            for host in todo:
                host.wait_ready(start + UP_DEADLINE)
            rootfs.prune()
        names = " ".join(h.name for h in todo)
        print(f"lab: up ({names}) in {time.monotonic() - start:.1f} s "
              f"({time.monotonic() - began:.1f} s with root and keys)", flush=True)
        return True

    def down(self) -> None:
        """Stop every host; nothing of the lab stays running or mounted."""
        began = time.monotonic()
        with locked():
            for host in self.hosts.values():
                host.stop()
        print(f"lab: down in {time.monotonic() - began:.1f} s", flush=True)

    def status(self) -> list[dict[str, object]]:
        """One record per host: pid, health, address, URI, versions."""
        records = []
        for host in self.hosts.values():
            record: dict[str, object] = {"host": host.name, "pid": host.pid,
                                         "address": host.address, "running": host.running}
            if host.running:
                record["libvirt_answers"] = host.libvirt_answers()
                record["ssh_answers"] = host.ssh_answers()
                record["uri"] = host.uri
                if record["libvirt_answers"]:
                    record.update(host.versions())
            records.append(record)
        return records


def check_requirements() -> None:
    """Fail with the reason when this machine cannot run the lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, chroot)")
    if not os.path.exists("/dev/kvm"):
        raise LabError("/dev/kvm is missing: load kvm_intel or kvm_amd (nested virtualization "
                       "must be enabled when this machine is itself a VM)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise LabError("/dev/kvm is not readable and writable")
    needed = ["unshare", "nsenter", "mount", "ssh", "ssh-keygen"]
    if not rootfs.root_path().is_dir():
        needed.append("debootstrap")
    missing = [cmd for cmd in needed if shutil.which(cmd, path=config.HOST_ENV["PATH"]) is None]
    if missing:
        raise LabError(f"missing commands: {' '.join(missing)}; "
                       "apt-get install debootstrap util-linux mount openssh-client")


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the lab's lock so two up/down runs never interleave."""
    config.STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(config.LOCK_FILE, "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
