"""Build and cache the Debian root shared read-only by every lab host."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from lab import config
from lab.fsutil import remove_tree

# Run inside the chroot (proc and /dev mounted) after debootstrap.
INSTALL_SCRIPT = """
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "$@"
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt >/dev/null || groupadd -r libvirt
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm \
    -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
for rom in bios-256k.bin vgabios-virtio.bin vgabios-stdvga.bin efi-virtio.rom; do
    test -e "/usr/share/qemu/$rom" || { echo "missing QEMU rom $rom" >&2; exit 1; }
done
command -v virtlogd libvirtd virsh sshd qemu-system-x86_64 >/dev/null
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


def _build(tmp: Path, out) -> None:
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
        'mount --rbind /dev "$root/dev" && exec chroot "$root" /bin/sh -c "$0" "$@"'
    )
    _run(private + ["sh", "-c", mount_and_chroot, INSTALL_SCRIPT, str(tmp), *config.PACKAGES],
         out)


def _run(argv: list[str], out) -> None:
    """Run a build step with its output in the log; fail with the log's tail."""
    out.write(f"+ {' '.join(argv[:8])} ...\n")
    out.flush()
    result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                            env={**os.environ, **config.HOST_ENV})
    if result.returncode != 0:
        raise RuntimeError(f"root build step failed ({result.returncode}): {argv[-3:]}; "
                           f"see {out.name}")


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
