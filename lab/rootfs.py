"""Build and cache the Debian root shared read-only by every lab host."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import TextIO

from lab import config
from lab.errors import LabError, tail
from lab.fsutil import remove_tree

# Run inside the chroot (proc and /dev mounted) after debootstrap.
INSTALL_SCRIPT = """
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "$@"
for cmd in virtlogd libvirtd virsh virt-ssh-helper sshd ssh qemu-system-x86_64; do
    command -v "$cmd" >/dev/null || { echo "missing command $cmd" >&2; exit 1; }
done
# QEMU must find SeaBIOS and the VGA/iPXE option roms (a missing rom is fatal at init).
printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
    qemu-system-x86_64 -machine pc,accel=tcg -display none -nodefaults -S -qmp stdio \
        -device virtio-vga -netdev user,id=n0 -device virtio-net-pci,netdev=n0
rm -f /etc/ssh/ssh_host_*
apt-get clean
"""

# Refuse service starts from package scripts while installing (and later, inside hosts).
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


def root_key() -> str:
    """Hash of everything that decides the root's content."""
    recipe = {"suite": config.SUITE, "packages": sorted(config.PACKAGES),
              "recipe": config.RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def root_path() -> Path:
    """Where the root for the current recipe lives once built."""
    return config.CACHE_DIR / f"rootfs-{root_key()}"


def ensure_root() -> Path:
    """Return the cached root, building it first if the recipe changed.

    The caller holds the lab lock, so leftovers of crashed builds can be removed.
    """
    final = root_path()
    if final.is_dir():
        return final
    config.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in config.CACHE_DIR.glob(".build-*"):
        remove_tree(stale)
    tmp = config.CACHE_DIR / f".build-{root_key()}"
    log = config.CACHE_DIR / f"build-{root_key()}.log"
    print(f"lab: building root {final.name} (log: {log})", flush=True)
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        _build(tmp, out)
    seconds = time.monotonic() - start
    _write_manifest(tmp, seconds)
    os.rename(tmp, final)
    print(f"lab: root built in {seconds:.0f} s", flush=True)
    return final


def prune() -> None:
    """Delete roots and logs of other recipes (call once no host runs on them)."""
    current = root_key()
    for path in config.CACHE_DIR.glob("rootfs-*"):
        if path.name != f"rootfs-{current}":
            remove_tree(path)
    for path in config.CACHE_DIR.glob("build-*.log"):
        if path.name != f"build-{current}.log":
            path.unlink()


def _build(tmp: Path, out: TextIO) -> None:
    """debootstrap, then install the packages; mounts live in a private namespace."""
    private = ["unshare", "-m", "--propagation", "private", "--"]
    _run(private + ["debootstrap", "--variant=minbase", config.SUITE, str(tmp), config.MIRROR],
         out)
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D, encoding="utf-8")
    policy.chmod(0o755)
    (tmp / "etc/resolv.conf").write_bytes(Path("/etc/resolv.conf").read_bytes())
    mount_and_chroot = (
        'root="$1"; shift; mount -t proc proc "$root/proc" && '
        'mount --rbind /dev "$root/dev" && exec chroot "$root" /bin/sh -c "$0" lab-install "$@"'
    )
    _run(private + ["sh", "-c", mount_and_chroot, INSTALL_SCRIPT, str(tmp), *config.PACKAGES],
         out)


def _run(argv: list[str], out: TextIO) -> None:
    """Run a build step with its output in the log; fail with the log's tail."""
    out.write(f"+ {' '.join(argv[:8])} ...\n")
    out.flush()
    proxies = {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
    result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                            env={**config.HOST_ENV, **proxies})
    if result.returncode != 0:
        raise LabError(f"root build step failed ({result.returncode}); {out.name} ends with:\n"
                       + tail(Path(out.name)))


def _write_manifest(tmp: Path, seconds: float) -> None:
    """Record what the root holds in /etc/ncdma-lab-root.json inside it."""
    versions = subprocess.run(
        ["chroot", str(tmp), "dpkg-query", "-W", "-f", "${Package} ${Version}\n",
         "qemu-system-x86", "libvirt-daemon", "python3", "openssh-server"],
        capture_output=True, text=True, check=True).stdout.split("\n")
    manifest = {"key": root_key(), "suite": config.SUITE, "packages": list(config.PACKAGES),
                "recipe": config.RECIPE_VERSION, "build_seconds": round(seconds),
                "versions": dict(line.split(" ", 1) for line in versions if line)}
    (tmp / "etc/ncdma-lab-root.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                                 encoding="utf-8")
