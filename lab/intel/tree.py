"""A file tree for an initramfs, filled from this machine's files at their own paths.

Bochs has no 9p: what the guest runs must be in its initramfs. Host files keep their paths
(an editable install and shebangs then work unchanged), their modes and their mtimes;
ELF files lose their debugging sections (the guest loads the archive at emulated speed). Symbolic links
on the way to a file are kept as links (``/lib`` -> ``usr/lib``), and so are the files they
name. The tree packs into one newc cpio archive whose hash names it in the cache.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
from pathlib import Path

from lab.errors import LabError
from lab.kernel.initramfs import newc_entry

_TRAILER = "TRAILER!!!"


def _stripped(path: Path) -> bytes:
    """An ELF file without its debugging sections (libpython alone has 20 MB of them).

    :raise LabError: When strip fails.
    """
    with tempfile.TemporaryDirectory(prefix="strip-") as work:
        copy = Path(work) / path.name
        done = subprocess.run(["strip", "--strip-debug", "-o", str(copy), str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LabError(f"strip {path} failed: {done.stderr.strip()}")
        return copy.read_bytes()


class Tree:
    """Paths (relative to the guest's /) with their mode, data and mtime, parents first."""

    def __init__(self) -> None:
        # path -> (mode, data, mtime, rdev)
        self.entries: dict[str, tuple[int, bytes, int, tuple[int, int]]] = {}

    def add_dir(self, path: str) -> None:
        """A directory (and its parents), mode 0755."""
        name = path.strip("/")
        if not name or name in self.entries:
            return
        self.add_dir(os.path.dirname(name))
        self.entries[name] = (stat.S_IFDIR | 0o755, b"", 0, (0, 0))

    def add_file(self, path: str, data: bytes, mode: int = 0o755, mtime: int = 0) -> None:
        """A regular file made here (not a host file), with its parents."""
        name = path.strip("/")
        self.add_dir(os.path.dirname(name))
        self.entries[name] = (stat.S_IFREG | mode, data, mtime, (0, 0))

    def add_char_device(self, path: str, rdev: tuple[int, int]) -> None:
        """A character device node (mode 0600)."""
        name = path.strip("/")
        self.add_dir(os.path.dirname(name))
        self.entries[name] = (stat.S_IFCHR | 0o600, b"", 0, rdev)

    def add_host(self, path: Path | str, depth: int = 0) -> None:
        """This machine's ``path`` (a file or a directory, recursively), links followed.

        :raise LabError: When ``path`` does not exist.
        """
        if depth > 20:
            raise LabError(f"too many symbolic links on the way to {path}")
        current = Path("/")
        parts = Path(os.path.normpath(path)).parts[1:]
        for index, part in enumerate(parts):
            current = current / part
            name = str(current).strip("/")
            if current.is_symlink():
                target = os.readlink(current)
                self.add_dir(os.path.dirname(name))
                self.entries[name] = (stat.S_IFLNK | 0o777, target.encode(), 0, (0, 0))
                resolved = os.path.normpath(os.path.join(current.parent, target))
                self.add_host(Path(resolved, *parts[index + 1:]), depth + 1)
                return
            if not current.exists():
                raise LabError(f"{current} is missing on this machine (needed by the Intel "
                               "lab's initramfs)")
            if index < len(parts) - 1:
                self.add_dir(name)
        info = current.stat()
        if stat.S_ISDIR(info.st_mode):
            self.add_dir(str(current))
            for child in sorted(current.iterdir()):
                self.add_host(child, depth)
        elif name not in self.entries:
            data = current.read_bytes()
            if data[:4] == b"\x7fELF":
                data = _stripped(current)
            self.entries[name] = (stat.S_IFREG | stat.S_IMODE(info.st_mode), data,
                                  int(info.st_mtime), (0, 0))

    def add_libraries(self, binary: Path | str) -> None:
        """The shared libraries ``binary`` loads (ldd), and the loader.

        :raise LabError: When ldd cannot resolve one.
        """
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            words = line.split()
            if "not found" in line:
                raise LabError(f"{binary} needs {words[0]}, which ldd cannot find")
            if "=>" in words and len(words) >= 3 and words[2].startswith("/"):
                self.add_host(words[2])
            elif words and words[0].startswith("/"):
                self.add_host(words[0])

    def drop_files_of(self, other: Tree) -> None:
        """Leave out the files and links ``other`` has (the archives are unpacked together)."""
        for name, entry in other.entries.items():
            if not stat.S_ISDIR(entry[0]) and self.entries.get(name) == entry:
                del self.entries[name]

    def archive(self) -> bytes:
        """The tree as one newc cpio archive."""
        records = [newc_entry(name, mode, data, rdev, ino, mtime)
                   for ino, (name, (mode, data, mtime, rdev))
                   in enumerate(self.entries.items(), start=1)]
        return b"".join(records) + newc_entry(_TRAILER, 0)


def cached_archive(tree: Tree, cache: Path, prefix: str) -> Path:
    """Write ``tree``'s archive to ``cache`` under a hash of its bytes, unless it is there."""
    data = tree.archive()
    path = cache / f"{prefix}-{hashlib.sha256(data).hexdigest()[:16]}.cpio"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        for stale in cache.glob(f"{prefix}-*.cpio"):  # one archive per prefix in the cache
            if stale != path:
                stale.unlink()
    return path
