"""SSH keys of the lab: one client key for root on every host, one host key per host."""
from __future__ import annotations

import subprocess
from pathlib import Path

from lab import config


def ensure_key(path: Path, comment: str) -> str:
    """Create an ed25519 key pair at path once; return the public key line."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text(encoding="utf-8").strip()


def host_key_path(host: str) -> Path:
    """Private host key of one host, kept across ups so known_hosts stays valid."""
    return config.STATE_DIR / host / "ssh_host_ed25519_key"


def ensure_all() -> str:
    """Create every key and the shared known_hosts; return the known_hosts text."""
    ensure_key(config.LAB_KEY, "ncdma-lab")
    lines = []
    for spec in config.HOSTS:
        public = ensure_key(host_key_path(spec.name), f"root@{spec.name}")
        key_type, key = public.split()[:2]
        lines.append(f"{spec.address},{spec.name} {key_type} {key}\n")
    text = "".join(lines)
    config.KNOWN_HOSTS.write_text(text, encoding="utf-8")
    return text
