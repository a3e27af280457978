"""The Python that goes into the Bochs guest: this interpreter, and only the modules it needs.

The guest runs ``ncdma check``, ``ncdma guardd``, ``ncdma status``, the wrapper
``ncdma-qemu`` and the lab's driver (lab/intel/inside.py). A child interpreter imports
those, and every ncdma module, with libvirt-python and lxml blocked (with their libraries
they would triple the image, and no command run there needs them), and reports the files
of what it imported; for the standard library's packages (asyncio, json, ...) the whole
package goes in, for imports made inside functions. Each module goes in with its source
and an unchecked-hash ``.pyc``: the guest's kernel does not keep the archive's mtimes, so a
timestamp ``.pyc`` would be recompiled there, which costs seconds per command under Bochs.
"""
from __future__ import annotations

import importlib.util
import json
import py_compile
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from lab.errors import LabError
from lab.intel.tree import Tree

REPO = Path(__file__).resolve().parents[2]
ENTRY_MODULES = ("encodings.utf_8", "encodings.aliases", "encodings.latin_1", "encodings.ascii",
                 "site", "ncdma.cli.main", "ncdma.wrapper", "ncdma.guard.service",
                 "ncdma.cli.status",
                 "lab.intel.inside")
# run as scripts (importing them would run them): only their files go in
SCRIPT_MODULES = ("ncdma.__main__", "lab.intel.inside")
BLOCKED = ("libvirt", "libvirt_qemu", "libvirt_lxc", "libvirtaio", "lxml")
_SKIPPED_STDLIB = {"test", "tests", "idle_test", "__pycache__"}
_LISTER = """
import importlib, importlib.util, json, pkgutil, sys
BLOCKED, ENTRY, SCRIPTS = {blocked!r}, {entry!r}, {scripts!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is left out of the Intel lab's image")
sys.meta_path.insert(0, Block())
for name in ENTRY:
    importlib.import_module(name)
import ncdma
for info in pkgutil.walk_packages(ncdma.__path__, "ncdma."):
    if info.name not in SCRIPTS:
        try:
            importlib.import_module(info.name)
        except ImportError:
            pass
files = {{getattr(module, "__file__", None) for module in list(sys.modules.values())}}
files |= {{importlib.util.find_spec(name).origin for name in SCRIPTS}}
print(json.dumps(sorted(path for path in files if path)))
"""


def _module_files() -> list[Path]:
    """The files of every module the entry modules and ncdma import, plus whole stdlib
    packages.

    :raise LabError: When an entry module does not import.
    """
    lister = _LISTER.format(blocked=BLOCKED, entry=ENTRY_MODULES, scripts=SCRIPT_MODULES)
    done = subprocess.run([sys.executable, "-c", lister], cwd=REPO, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"cannot list the modules the guest needs: {done.stderr.strip()[-800:]}")
    files = {Path(path) for path in json.loads(done.stdout) if Path(path).exists()}
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in list(files):
        if path.is_relative_to(stdlib) and len(path.relative_to(stdlib).parts) > 1:
            package = stdlib / path.relative_to(stdlib).parts[0]
            if package.name != "lib-dynload":
                files |= {source for source in package.rglob("*.py")
                          if not _SKIPPED_STDLIB & set(source.relative_to(stdlib).parts)}
    return sorted(files)


def _hash_pyc(source: Path) -> bytes:
    """``source`` compiled to an unchecked-hash .pyc (valid whatever the file's mtime)."""
    with tempfile.NamedTemporaryFile(suffix=".pyc") as compiled:
        py_compile.compile(str(source), cfile=compiled.name, dfile=str(source), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        return Path(compiled.name).read_bytes()


def add_python(tree: Tree) -> None:
    """This checkout's venv interpreter with the modules the guest's commands import.

    :raise LabError: When the venv is missing or a module does not compile.
    """
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix):
        raise LabError("run the Intel lab from the checkout's venv (.venv/bin/python -m "
                       "lab.intel): the guest gets that venv's interpreter")
    for path in (venv / "pyvenv.cfg", venv / "bin" / "python", venv / "bin" / "ncdma",
                 venv / "bin" / "ncdma-qemu", *venv.glob("lib/python3*/site-packages/__editable__*ncdma*.pth"),
                 *venv.glob("lib/python3*/site-packages/ncdma-*.dist-info")):
        tree.add_host(path)
    tree.add_libraries(Path(sys.executable).resolve())
    tag = sys.implementation.cache_tag
    for path in _module_files():
        tree.add_host(path)
        if path.suffix == ".py":
            cached = importlib.util.cache_from_source(str(path))
            try:
                tree.add_file(cached, _hash_pyc(path), 0o644)
            except py_compile.PyCompileError as err:
                raise LabError(f"{path} does not compile ({tag}): {err}") from None
        elif path.suffix == ".so":
            tree.add_libraries(path)
