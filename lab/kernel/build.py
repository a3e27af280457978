"""Build a lab kernel (stock, patched or 6.12) from Debian's kernel source, cached by recipe key.

A cached kernel costs a hash of the inputs and a stat. Otherwise the source tarball is
unpacked into a work directory next to the cache, patched (``patched`` only), configured
(``make tinyconfig`` + lab.config, every fragment line checked in the result) and built
(``make bzImage``; ``patched`` also builds the KVM selftest it extends); the image, its
.config (and the selftest) are kept, the work directory is removed.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lab.errors import LabError, tail
from lab.kernel.recipe import (
    BASE_CONFIG,
    CACHE_DIR,
    CONFIG_FRAGMENT,
    IMAGE_PATH,
    MAKE_VARIABLES,
    PATCH,
    SELFTEST,
    SELFTEST_DIR,
    SOURCE_6_1,
    TARGET,
    Recipe,
    Variant,
)
from lab.kernel.trixie import fetch_source_6_12

KEEP_BUILDS = 3  # per variant
# Debian packages the kernel build and the nested run need.
PACKAGES = (SOURCE_6_1.package, "make", "gcc", "bc", "bison", "flex", "libelf-dev", "libssl-dev",
            "cpio", "xz-utils", "patch", "busybox-static", "qemu-system-x86")


@dataclass(frozen=True)
class BuildResult:
    """A kernel ready in the cache, and what getting it cost."""

    recipe: Recipe
    cached: bool
    seconds: float


def ensure_packages(packages: Sequence[str] = PACKAGES) -> None:
    """Install whichever of ``packages`` is missing (apt-get; needs root).

    :raise LabError: When apt-get fails.
    """
    missing = [name for name in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True,
        check=False).stdout != "install ok installed"]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")


def source_version(variant: Variant = Variant.STOCK) -> str:
    """The version of the source package ``variant`` is built from (part of its cache key):
    Debian 12's installed linux-source-6.1, or Debian 13's linux-source-6.12 (fetched
    into the cache on first use).

    :raise LabError: When linux-source-6.1 is not installed, or 6.12 cannot be fetched.
    """
    if variant is Variant.UPSTREAM:
        return fetch_source_6_12()
    source = variant.source
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", source.package],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout or not source.tarball.exists():
        raise LabError(f"{source.package} is not installed ({source.tarball} missing): "
                       "run `python3 -m lab.kernel build`, which installs it")
    return done.stdout.strip()


def fragment_mismatches(config: str, fragment: str) -> list[str]:
    """The lines of ``fragment`` that the final ``config`` does not honor.

    ``CONFIG_X=v`` must appear as such; ``# CONFIG_X is not set`` must not be set to
    anything (kconfig drops options whose dependencies are missing).
    """
    values = {}
    for line in config.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.startswith("CONFIG_"):
            values[name] = value
    wrong = []
    for line in fragment.splitlines():
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            name = line[2:-len(" is not set")]
            if values.get(name, "n") != "n":
                wrong.append(f"{line} (got {name}={values[name]})")
        elif line.startswith("CONFIG_"):
            name, _, value = line.partition("=")
            if values.get(name) != value:
                wrong.append(f"{line} (got {values.get(name, 'not set')})")
    return wrong


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``: one kernel build at a time on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _step(argv: Sequence[str | Path], log: IO[str], log_path: Path,
          cwd: Path | None = None) -> None:
    """Run one build step with its output in the log.

    :raise LabError: When it fails; the message has the log's tail.
    """
    command = " ".join(str(arg) for arg in argv)
    log.write(f"$ {command}\n")
    log.flush()
    done = subprocess.run([str(arg) for arg in argv], stdout=log, stderr=subprocess.STDOUT,
                          cwd=cwd, check=False)
    if done.returncode != 0:
        log.flush()
        raise LabError(f"kernel build step failed ({done.returncode}): {command}\n"
                       f"{tail(log_path, 30)}\n(full log: {log_path})")


def _configure_and_build(recipe: Recipe, work: Path, jobs: int, log: IO[str],
                         log_path: Path) -> Path:
    """Unpack, patch, configure and build in ``work``; return the build's output directory."""
    source, out = work / "src", work / "out"
    source.mkdir(parents=True)
    _step(["tar", "-xJf", recipe.variant.source.tarball, "-C", source, "--strip-components=1"], log, log_path)
    if recipe.variant is Variant.PATCHED:
        _step(["patch", "-p1", "--forward", "--batch", "-i", PATCH], log, log_path, cwd=source)
    make: list[str | Path] = ["make", "-C", source, f"O={out}", *MAKE_VARIABLES]
    _step([*make, BASE_CONFIG], log, log_path)
    _step([source / "scripts/kconfig/merge_config.sh", "-m", "-O", out, out / ".config",
           CONFIG_FRAGMENT], log, log_path, cwd=source)
    _step([*make, "olddefconfig"], log, log_path)
    wrong = fragment_mismatches((out / ".config").read_text(), CONFIG_FRAGMENT.read_text())
    if wrong:
        raise LabError(f"{CONFIG_FRAGMENT.name} is not honored by kconfig (a dependency is "
                       f"missing from the fragment): {'; '.join(wrong)}")
    _step([*make, f"-j{jobs}", TARGET], log, log_path)
    if recipe.variant is Variant.PATCHED:
        _step([*make, "headers"], log, log_path)
        _step(["make", "-C", source / SELFTEST_DIR, f"-j{jobs}", f"OUTPUT={out}/kselftest",
               f"LINUX_HDR_PATH={out}/usr/include/", out / "kselftest" / SELFTEST], log, log_path)
    return out


def _prune(recipe: Recipe) -> None:
    """Remove the variant's older builds, keeping the KEEP_BUILDS newest: checkouts with
    different recipes (branches) share the cache, and must not rebuild each other's."""
    builds = sorted((path for path in CACHE_DIR.glob(f"kernel-{recipe.variant.value}-*")
                     if path.is_dir() and (path / "bzImage").exists()),
                    key=lambda path: path.stat().st_mtime, reverse=True)
    for stale in builds[KEEP_BUILDS:]:
        if stale != recipe.cache_dir:
            shutil.rmtree(stale)
            stale.with_name(stale.name + ".log").unlink(missing_ok=True)


def build_kernel(recipe: Recipe, jobs: int, say: Callable[[str], None]) -> BuildResult:
    """Make sure ``recipe``'s kernel is in the cache; build it if it is not.

    :raise LabError: When a build step fails.
    """
    started = time.monotonic()
    if recipe.bzimage.exists():
        return BuildResult(recipe, True, time.monotonic() - started)
    with _locked(CACHE_DIR / "kernel.lock"):
        if recipe.bzimage.exists():  # built by another process while we waited
            return BuildResult(recipe, True, time.monotonic() - started)
        say(f"building the {recipe.variant.value} kernel ({recipe.variant.source.package} "
            f"{recipe.source_version}, {BASE_CONFIG} + {CONFIG_FRAGMENT.name}, -j{jobs}) "
            f"into {recipe.cache_dir}")
        work = recipe.cache_dir.with_name(recipe.cache_dir.name + ".work")
        staging = recipe.cache_dir.with_name(recipe.cache_dir.name + ".new")
        log_path = recipe.cache_dir.with_name(recipe.cache_dir.name + ".log")
        for stale in (work, staging):
            shutil.rmtree(stale, ignore_errors=True)
        with log_path.open("w") as log:
            out = _configure_and_build(recipe, work, jobs, log, log_path)
        staging.mkdir()
        shutil.copy2(out / IMAGE_PATH, staging / "bzImage")
        shutil.copy2(out / ".config", staging / "config")
        if recipe.variant is Variant.PATCHED:
            shutil.copy2(out / "kselftest" / SELFTEST, staging / SELFTEST)
        seconds = time.monotonic() - started
        (staging / "build.json").write_text(json.dumps({
            "variant": recipe.variant.value, "key": recipe.key,
            "source": [recipe.variant.source.package, recipe.source_version], "jobs": jobs,
            "seconds": round(seconds, 1)}, indent=2))
        os.replace(staging, recipe.cache_dir)
        shutil.rmtree(work)
        _prune(recipe)
    return BuildResult(recipe, False, seconds)


def build_variants(variants: Sequence[str], jobs: int, say: Callable[[str], None]) -> None:
    """Install what is missing, then build or find each kernel; say what each cost.

    :raise LabError: When a package, a source or a build step fails.
    """
    ensure_packages()
    for name in variants:
        variant = Variant(name)
        started = time.monotonic()
        version = source_version(variant)
        if time.monotonic() - started > 1:
            say(f"source {variant.source.package} {version}: fetched and checked in "
                f"{time.monotonic() - started:.1f} s")
        result = build_kernel(Recipe(variant, version), jobs, say)
        how = "cached" if result.cached else "built"
        say(f"kernel {name}: {how} in {result.seconds:.1f} s: {result.recipe.bzimage}")
